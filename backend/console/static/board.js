/* Kuzet live board: open incidents on a map and in a list, kept current by server-sent events.
   No inline script (the page's CSP forbids it); words come from data-words. */
(function () {
  "use strict";
  var root = document.getElementById("board");
  if (!root) { return; }
  var words = JSON.parse(root.getAttribute("data-words") || "{}");
  var tiles = root.getAttribute("data-tiles");
  var attribution = root.getAttribute("data-attribution") || "";
  function w(key) { return words[key] || key; }

  var incidents = {};   // id -> item (highest version seen)
  var markers = {};     // id -> Leaflet layer
  var lastId = null;    // the stream's cursor (also sent back as Last-Event-ID by the browser)
  var loaded = false;   // the first full list arrived: from then on a new id is a new incident
  var source = null;
  var clockSkew = 0;    // server now - browser now, in ms

  // --- the map: works without tiles (venues on a blank canvas), tiles only when configured ---
  var map = L.map("map", { center: [43.2389, 76.8897], zoom: 12 });
  if (tiles) {
    L.tileLayer(tiles, { attribution: attribution, maxZoom: 19 }).addTo(map);
  } else {
    map.attributionControl.setPrefix(false);
  }

  // --- sound and visual cue, silenceable -------------------------------------------------
  var soundOn = window.localStorage.getItem("kuzet.sound") === "on";
  var audio = null;
  var toggle = document.getElementById("sound-toggle");
  var cue = document.getElementById("cue");
  function showSound() {
    toggle.textContent = soundOn ? w("board.sound_on") : w("board.sound_off");
    toggle.setAttribute("aria-pressed", soundOn ? "true" : "false");
  }
  toggle.addEventListener("click", function () {
    soundOn = !soundOn;
    window.localStorage.setItem("kuzet.sound", soundOn ? "on" : "off");
    if (soundOn && !audio && window.AudioContext) { audio = new window.AudioContext(); }
    if (audio && audio.state === "suspended") { audio.resume(); }
    showSound();
  });
  document.getElementById("cue-silence").addEventListener("click", function () {
    cue.hidden = true;
    document.title = document.title.replace(/^\(\d+\) /, "");
  });
  showSound();
  function beep() {
    if (!soundOn || !audio) { return; }
    var t = audio.currentTime;
    [0, 0.35].forEach(function (offset) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.25, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.001, t + offset + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.3);
    });
  }
  var fresh = 0;
  function announce(item) {
    fresh += 1;
    document.getElementById("cue-text").textContent =
      w("board.new_incident") + ": " + w("kind." + item.kind) + " · " + item.venue;
    cue.hidden = false;
    document.title = "(" + fresh + ") " + document.title.replace(/^\(\d+\) /, "");
    beep();
  }

  // --- rendering ------------------------------------------------------------------------
  function age(iso) {
    var s = Math.max(0, Math.round((Date.now() + clockSkew - Date.parse(iso)) / 1000));
    if (s < 120) { return s + " s"; }
    if (s < 7200) { return Math.floor(s / 60) + " min"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function render() {
    var body = document.getElementById("incident-rows");
    var items = Object.keys(incidents).map(function (k) { return incidents[k]; });
    items.sort(function (a, b) { return Date.parse(b.opened_at) - Date.parse(a.opened_at); });
    body.textContent = "";
    items.forEach(function (item) {
      var tr = document.createElement("tr");
      tr.id = "incident-" + item.id;
      tr.className = "row state-" + item.status + (item.not_delivered ? " failing" : "") + (item.fresh ? " fresh" : "");
      var kind = cell(tr, "");
      var link = document.createElement("a");
      link.href = "/console/incidents/" + item.id;
      link.textContent = w("kind." + item.kind);
      link.className = "incident-link";
      kind.appendChild(link);
      cell(tr, item.venue);
      cell(tr, age(item.opened_at), "age").setAttribute("data-opened", item.opened_at);
      cell(tr, w("state." + item.status), "state");
      cell(tr, String(item.notified));
      cell(tr, String(item.acknowledged));
      cell(tr, String(item.not_delivered), item.not_delivered ? "bad" : "");
      body.appendChild(tr);
    });
    document.getElementById("count").textContent = String(items.length);
    document.getElementById("empty").hidden = items.length > 0;
  }
  function place(item) {
    var color = item.status === "confirmed" ? "#c62828" : "#ef6c00";
    var layer = markers[item.id];
    if (!layer) {
      layer = L.circleMarker([item.lat, item.lon], { radius: 10, weight: 2, color: color, fillOpacity: 0.6 });
      layer.on("click", function () { window.location.assign("/console/incidents/" + item.id); });
      layer.addTo(map);
      markers[item.id] = layer;
    }
    layer.setStyle({ color: color });
    layer.bindTooltip(w("kind." + item.kind) + " · " + item.venue);
  }
  function drop(id) {
    delete incidents[id];
    if (markers[id]) { map.removeLayer(markers[id]); delete markers[id]; }
  }
  function apply(update) {
    clockSkew = Date.parse(update.now) - Date.now();
    if (update.reset) {
      Object.keys(incidents).forEach(drop);
    }
    update.items.forEach(function (item) {
      var known = incidents[item.id];
      if (known && known.version > item.version) { return; }
      if (item.status === "resolved") { drop(item.id); return; }
      item.fresh = known ? known.fresh : loaded;
      incidents[item.id] = item;
      place(item);
      if (!known && loaded) { announce(item); }
    });
    loaded = true;
    render();
    var ids = Object.keys(markers);
    if (ids.length && update.reset) {
      map.fitBounds(L.featureGroup(ids.map(function (k) { return markers[k]; })).getBounds().pad(0.5), { maxZoom: 15 });
    }
  }

  // --- the stream: the browser reconnects by itself (Last-Event-ID); if it gives up, so do not we ---
  var live = document.getElementById("live");
  function status(state) {
    live.setAttribute("data-state", state);
    live.textContent = state === "live" ? w("board.connected") : w("board.reconnecting");
  }
  function connect() {
    var url = "/console/board/events" + (lastId ? "?since=" + encodeURIComponent(lastId) : "");
    source = new window.EventSource(url);
    source.addEventListener("open", function () { status("live"); });
    source.addEventListener("incidents", function (e) {
      lastId = e.lastEventId || lastId;
      status("live");
      apply(JSON.parse(e.data));
    });
    source.addEventListener("unavailable", function () { status("down"); });
    source.addEventListener("signed_out", function () { window.location.assign("/console/login"); });
    source.addEventListener("error", function () {
      status("down");
      if (source.readyState === window.EventSource.CLOSED) {
        source = null;
        window.setTimeout(connect, 2000);
      }
    });
  }
  connect();
  window.setInterval(function () {
    var cells = document.querySelectorAll("td.age");
    Array.prototype.forEach.call(cells, function (td) { td.textContent = age(td.getAttribute("data-opened")); });
  }, 1000);
})();
