/* Kuzet live board: open incidents grouped by venue on a map and in a list, most urgent first,
   kept current by server-sent events. No inline script (the page's CSP forbids it); words come
   from data-words; everything people typed (venue names, addresses, cameras) goes in as text. */
(function () {
  "use strict";
  var root = document.getElementById("board");
  if (!root) { return; }
  var words = JSON.parse(root.getAttribute("data-words") || "{}");
  var tiles = root.getAttribute("data-tiles");
  var attribution = root.getAttribute("data-attribution") || "";
  function w(key) { return words[key] || key; }
  function fill(key, values) {
    return w(key).replace(/\{(\w+)\}/g, function (_, name) { return String(values[name]); });
  }

  var incidents = {};   // id -> item (highest version seen)
  var lastId = null;    // the stream's cursor (also sent back as Last-Event-ID by the browser)
  var loaded = false;   // the first full list arrived: from then on a new id is a new incident
  var source = null;
  var clockSkew = 0;    // server now - browser now, in ms
  var live = false;     // while disconnected the board is greyed and its ages stop
  var lastUpdate = null;
  var filters = { kind: "", state: "", region: "", unack: false, failing: false };

  // --- the map: tiles where configured, else the regions' outlines and the venues' names ----------
  var map = L.map("map", { center: [43.2389, 76.8897], zoom: 12, preferCanvas: false });
  var clusterLayer = L.layerGroup().addTo(map);
  if (tiles) {
    L.tileLayer(tiles, { attribution: attribution, maxZoom: 19 }).addTo(map);
  } else {
    map.attributionControl.setPrefix(false);
    fetch("/console/board/outline", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (outline) {
        if (!outline) { return; }
        if (outline.city) { drawCity(outline.city); }
        L.geoJSON(outline.regions, {
          interactive: false,
          style: function () { return { color: "#5f7386", weight: 2, fillColor: "#e8eef3", fillOpacity: 0.55, dashArray: "6 4" }; }
        }).addTo(map).bringToBack();
        outline.regions.features.forEach(function (f) {
          if (!f.properties || !f.properties.label) { return; }
          var c = L.geoJSON(f).getBounds().getCenter();
          L.marker(c, { interactive: false, keyboard: false, icon: label("region-label", f.properties.label) }).addTo(map);
        });
        outline.venues.forEach(function (v) {
          L.marker([v.lat, v.lon], { interactive: false, keyboard: false, icon: label("venue-label", v.name) }).addTo(map);
        });
        if (!Object.keys(incidents).length && outline.venues.length) {
          map.fitBounds(L.latLngBounds(outline.venues.map(function (v) { return [v.lat, v.lon]; })).pad(0.3), { maxZoom: 15 });
        }
      })
      .catch(function () { /* the board works without the outline */ });
  }
  // The city's districts and streets (KUZET_CONSOLE_OUTLINE, or the shipped approximate Almaty outline):
  // thin lines under everything, their names as text labels in the page's language.
  var lang = document.documentElement.lang || "en";
  function cityName(p) { return (p && (p["name:" + lang] || p.name)) || ""; }
  function middle(coords) {  // the middle of a line: its middle vertex, or the middle of its middle segment
    var i = Math.floor((coords.length - 1) / 2);
    var a = coords[i], b = coords[Math.min(i + 1, coords.length - 1)];
    return coords.length % 2 ? [a[1], a[0]] : [(a[1] + b[1]) / 2, (a[0] + b[0]) / 2];
  }
  function drawCity(city) {
    L.geoJSON(city, {
      interactive: false,
      pointToLayer: function (f, at) { return L.circleMarker(at, { radius: 2, color: "#8796a3", interactive: false }); },
      style: function (f) {
        var kind = f.properties && f.properties.kind;
        return kind === "street" ? { color: "#aab4bd", weight: 3, opacity: 0.9 }
          : { color: "#8796a3", weight: 1, fillColor: "#f3f5f7", fillOpacity: 0.35 };
      }
    }).addTo(map).bringToBack();
    (city.features || []).forEach(function (f) {
      var name = cityName(f.properties);
      var g = f.geometry;
      if (!name || !g) { return; }
      var at = null;
      if (g.type === "Point") { at = [g.coordinates[1], g.coordinates[0]]; }
      else if (g.type === "LineString") { at = middle(g.coordinates); }
      else if (g.type === "MultiLineString") { at = middle(g.coordinates[0]); }
      else { at = L.geoJSON(f).getBounds().getCenter(); }
      var cls = f.properties.kind === "street" ? "street-label" : f.properties.kind === "place" ? "place-label" : "district-label";
      L.marker(at, { interactive: false, keyboard: false, icon: label(cls, name) }).addTo(map);
    });
  }
  function label(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return L.divIcon({ className: "map-text", html: el, iconSize: null });
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
  function showCue(text) {
    document.getElementById("cue-text").textContent = text;
    cue.hidden = false;
    beep();
  }
  var fresh = 0;
  function announce(item) {
    fresh += 1;
    document.title = "(" + fresh + ") " + document.title.replace(/^\(\d+\) /, "");
    showCue(w("board.new_incident") + ": " + w("kind." + item.kind) + " · " + item.venue);
  }

  // --- time: the camera's, at the venue, with its offset ------------------------------------
  function age(iso) {  // a number never parted from its unit ("16 с", not "16" / "с")
    var s = Math.max(0, Math.round((Date.now() + clockSkew - Date.parse(iso)) / 1000));
    if (s < 120) { return s + "\u00a0" + w("unit.s"); }
    if (s < 7200) { return Math.floor(s / 60) + "\u00a0" + w("unit.min"); }
    return Math.floor(s / 3600) + "\u00a0" + w("unit.h") + " " + Math.floor((s % 3600) / 60) + "\u00a0" + w("unit.min");
  }
  function ages(root) {
    Array.prototype.forEach.call(root.querySelectorAll(".age"), function (el) { el.textContent = age(el.getAttribute("data-at")); });
  }
  var formats = {};
  function local(iso, tz) {
    var f = formats[tz];
    if (!f) {
      try {
        f = new Intl.DateTimeFormat("en-GB", { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "longOffset" });
      } catch (e) {
        f = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" });
      }
      formats[tz] = f;
    }
    return f.format(new Date(iso)).replace("GMT", "");
  }

  // --- what is shown: filters, then urgency -----------------------------------------------
  function unacknowledged(item) { return item.status === "confirmed"; }
  function urgency(a, b) {
    var ua = unacknowledged(a) ? 0 : 1;
    var ub = unacknowledged(b) ? 0 : 1;
    if (ua !== ub) { return ua - ub; }
    return Date.parse(a.detected_at) - Date.parse(b.detected_at);  // oldest (longest waiting) first
  }
  function visible(item) {
    if (filters.kind && item.kind !== filters.kind) { return false; }
    if (filters.state && item.status !== filters.state) { return false; }
    if (filters.region && item.region !== filters.region) { return false; }
    if (filters.unack && !unacknowledged(item)) { return false; }
    if (filters.failing && !item.not_delivered) { return false; }
    return true;
  }
  function groups() {
    var byVenue = {};
    Object.keys(incidents).forEach(function (k) {
      var item = incidents[k];
      if (!visible(item)) { return; }
      var g = byVenue[item.venue_id];
      if (!g) {
        g = byVenue[item.venue_id] = { id: item.venue_id, venue: item.venue, address: item.address, region: item.region, lat: item.lat, lon: item.lon, items: [] };
      }
      g.items.push(item);
    });
    var list = Object.keys(byVenue).map(function (k) { return byVenue[k]; });
    list.forEach(function (g) { g.items.sort(urgency); });
    list.sort(function (a, b) { return urgency(a.items[0], b.items[0]); });
    return list;
  }
  function kindCounts(items) {
    var counts = {};
    items.forEach(function (i) { counts[i.kind] = (counts[i.kind] || 0) + 1; });
    return Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; })
      .map(function (k) { return { kind: k, n: counts[k] }; });
  }

  // --- the list -------------------------------------------------------------------------------
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function venueRow(g) {
    var tr = document.createElement("tr");
    tr.className = "venue-row";
    tr.id = "venue-" + g.id;
    var th = document.createElement("th");
    th.colSpan = 8;
    th.scope = "colgroup";
    var name = document.createElement("strong");
    name.textContent = g.venue;
    th.appendChild(name);
    var n = document.createElement("span");
    n.className = "badge venue-count";
    n.textContent = String(g.items.length);
    th.appendChild(document.createTextNode(" "));
    th.appendChild(n);
    var meta = document.createElement("span");
    meta.className = "venue-meta";
    meta.textContent = " " + [g.address, g.region].filter(Boolean).join(" · ") + " · " +
      kindCounts(g.items).map(function (c) { return w("kind." + c.kind) + " " + c.n; }).join(", ");
    th.appendChild(meta);
    tr.appendChild(th);
    return tr;
  }
  function incidentRow(item) {
    var tr = document.createElement("tr");
    tr.id = "incident-" + item.id;
    tr.className = "row state-" + item.status + (item.not_delivered ? " failing" : "") + (item.fresh ? " fresh" : "") +
      (unacknowledged(item) ? " unack" : "");
    var kind = cell(tr, "");
    var link = document.createElement("a");
    link.href = "/console/incidents/" + item.id;
    link.textContent = w("kind." + item.kind);
    link.className = "incident-link";
    kind.appendChild(link);
    cell(tr, (item.cameras || []).join(", ") || "—", "camera");
    var when = cell(tr, "", "when");
    var at = document.createElement("time");
    at.dateTime = item.detected_at;
    at.className = "camera-time";
    at.textContent = local(item.detected_at, item.timezone);
    when.appendChild(at);
    var ageEl = document.createElement("span");
    ageEl.className = "age";
    ageEl.setAttribute("data-at", item.detected_at);
    ageEl.textContent = age(item.detected_at);
    when.appendChild(document.createTextNode(" · "));
    when.appendChild(ageEl);
    if (item.received_at && Math.abs(Date.parse(item.received_at) - Date.parse(item.detected_at)) > 60000) {
      var rec = document.createElement("span");
      rec.className = "received";
      rec.textContent = " (" + w("board.received") + " " + local(item.received_at, item.timezone) + ")";
      when.appendChild(rec);
    }
    var st = cell(tr, w("state." + item.status), "st");
    if (item.claimed_by) {
      var claim = document.createElement("span");
      claim.className = "claim";
      claim.textContent = fill("board.handled_by", { name: item.claimed_by });
      st.appendChild(document.createElement("br"));
      st.appendChild(claim);
    }
    var acked = (item.acknowledged_by || []).join(", ");
    cell(tr, (acked || "—") + " (" + item.acknowledged + "/" + item.notified + ")", "people acked");
    cell(tr, (item.responders || []).join(", ") || "—", "people");
    contactsCell(tr, item.contacts);
    cell(tr, String(item.not_delivered), item.not_delivered ? "bad num" : "num");
    return tr;
  }
  // whom to call: the venue's bouncers on duty and its owner (seeing the numbers is audited by the server)
  function contactsCell(tr, contacts) {
    var td = cell(tr, contacts && contacts.length ? "" : "—", "contacts");
    (contacts || []).forEach(function (c) {
      var line = document.createElement("span");
      line.className = "contact";
      line.appendChild(document.createTextNode(c.display_name + " (" + w("role." + c.role) + ") "));
      if (c.phone) {
        var a = document.createElement("a");
        a.href = "tel:" + c.phone;
        a.textContent = c.phone;
        line.appendChild(a);
      } else {
        line.appendChild(document.createTextNode(w("incident.no_phone")));
      }
      td.appendChild(line);
    });
  }
  // A row that reads as it did stays the very element it was, so an update about one incident does
  // not take the keyboard focus, the hover or a half-made click from the dispatcher's other rows
  // (nor restart their flash). Changed and gone rows leave first, so a kept row moves only when the
  // order itself changed.
  function place(body, rows) {
    var before = {};
    Array.prototype.forEach.call(body.children, function (tr) { before[tr.id] = tr; });
    var wanted = {};
    var next = rows.map(function (tr) {
      var old = before[tr.id];
      if (old) { ages(old); ages(tr); }  // an age ticks every second: it alone does not make a row new
      var row = old && old.isEqualNode(tr) ? old : tr;
      wanted[row.id] = row;
      return row;
    });
    Array.prototype.slice.call(body.children).forEach(function (tr) {
      if (wanted[tr.id] !== tr) { body.removeChild(tr); }
    });
    next.forEach(function (row, i) {
      var at = body.children[i];
      if (at !== row) { body.insertBefore(row, at || null); }
    });
  }
  var pending = false;
  function render() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      draw();
    });
  }
  function draw() {
    var body = document.getElementById("incident-rows");
    var list = groups();
    var total = Object.keys(incidents).length;
    var shown = 0;
    var rows = [];
    list.forEach(function (g) {
      rows.push(venueRow(g));
      g.items.forEach(function (item) { rows.push(incidentRow(item)); shown += 1; });
    });
    place(body, rows);
    document.getElementById("count").textContent = String(total);
    document.getElementById("shown").textContent = shown === total ? "" : fill("board.shown", { shown: shown, total: total });
    document.getElementById("empty").hidden = shown > 0;
    cluster(list);
  }

  // --- the map's markers: one per place, labelled by count and kind, merged when they overlap ---
  var CLUSTER_PX = 46;
  var lastList = [];
  function cluster(list) {
    lastList = list;
    clusterLayer.clearLayers();
    var clusters = [];
    list.forEach(function (g) {
      var p = map.latLngToLayerPoint([g.lat, g.lon]);
      var near = null;
      for (var i = 0; i < clusters.length; i += 1) {
        if (clusters[i].point.distanceTo(p) < CLUSTER_PX) { near = clusters[i]; break; }
      }
      if (near) { near.groups.push(g); } else { clusters.push({ point: p, groups: [g] }); }
    });
    clusters.forEach(function (c) {
      var items = [];
      c.groups.forEach(function (g) { items = items.concat(g.items); });
      var kinds = kindCounts(items);
      var urgent = items.some(unacknowledged);
      var el = document.createElement("span");
      el.className = "cluster " + (urgent ? "unack" : "ack");
      var n = document.createElement("b");
      n.textContent = String(items.length);
      el.appendChild(n);
      var k = document.createElement("span");
      k.className = "cluster-kind";
      k.textContent = w("kind." + kinds[0].kind) + (kinds.length > 1 ? " +" + (kinds.length - 1) : "");
      el.appendChild(k);
      var first = c.groups[0];
      var marker = L.marker([first.lat, first.lon], {
        icon: L.divIcon({ className: "cluster-icon", html: el, iconSize: null }),
        keyboard: true,
        title: c.groups.map(function (g) { return g.venue; }).join(", "),
        alt: String(items.length) + " " + w("kind." + kinds[0].kind)
      });
      var tip = document.createElement("div");
      c.groups.forEach(function (g) {
        var line = document.createElement("div");
        line.textContent = g.venue + ": " + kindCounts(g.items).map(function (x) { return w("kind." + x.kind) + " " + x.n; }).join(", ");
        tip.appendChild(line);
      });
      marker.bindTooltip(tip, { direction: "top" });
      marker.on("click", function () {
        if (c.groups.length > 1) {
          map.fitBounds(L.latLngBounds(c.groups.map(function (g) { return [g.lat, g.lon]; })).pad(0.5));
        } else {
          var row = document.getElementById("venue-" + first.id);
          if (row) { row.scrollIntoView({ block: "start" }); }
        }
      });
      marker.addTo(clusterLayer);
    });
  }
  map.on("zoomend", function () { cluster(lastList); });

  function apply(update) {
    clockSkew = Date.parse(update.now) - Date.now();
    lastUpdate = update.now;
    if (update.reset) { incidents = {}; }
    update.items.forEach(function (item) {
      var known = incidents[item.id];
      if (known && known.version > item.version) { return; }
      if (item.status === "resolved") { delete incidents[item.id]; return; }
      item.fresh = known ? known.fresh : loaded;
      incidents[item.id] = item;
      if (!known && loaded) { announce(item); }
    });
    // whom to call is the venue's: the newest batch's numbers go on every open row of each venue it
    // names (a bouncer who came on or went off duty shows on rows that did not change themselves)
    var contacts = update.contacts || {};
    Object.keys(incidents).forEach(function (k) {
      var item = incidents[k];
      if (Object.prototype.hasOwnProperty.call(contacts, item.venue_id)) { item.contacts = contacts[item.venue_id]; }
    });
    var first = !loaded;
    loaded = true;
    draw();
    var ids = Object.keys(incidents);
    if (ids.length && (update.reset || first)) {
      map.fitBounds(L.latLngBounds(ids.map(function (k) { return [incidents[k].lat, incidents[k].lon]; })).pad(0.5), { maxZoom: 15 });
      cluster(lastList);
    }
  }

  // --- filters ------------------------------------------------------------------------------
  [["filter-kind", "kind"], ["filter-state", "state"], ["filter-region", "region"]].forEach(function (pair) {
    document.getElementById(pair[0]).addEventListener("change", function (e) { filters[pair[1]] = e.target.value; render(); });
  });
  [["filter-unack", "unack"], ["filter-failing", "failing"]].forEach(function (pair) {
    document.getElementById(pair[0]).addEventListener("change", function (e) { filters[pair[1]] = e.target.checked; render(); });
  });
  document.getElementById("board-filters").addEventListener("submit", function (e) { e.preventDefault(); });

  // --- the stream: the browser reconnects by itself (Last-Event-ID); if it gives up, so do not we ---
  var liveEl = document.getElementById("live");
  var staleEl = document.getElementById("stale");
  function status(state) {
    live = state === "live";
    liveEl.setAttribute("data-state", state);
    liveEl.textContent = live ? w("board.connected") : w("board.reconnecting");
    root.classList.toggle("stale", !live && loaded);
    if (!live && loaded && lastUpdate) {
      staleEl.textContent = fill("board.stale", { time: new Date(lastUpdate).toLocaleTimeString(document.documentElement.lang || undefined) });
      staleEl.hidden = false;
    } else {
      staleEl.hidden = true;
    }
  }
  function connect() {
    var url = "/console/board/events" + (lastId ? "?since=" + encodeURIComponent(lastId) : "");
    source = new window.EventSource(url);
    source.addEventListener("open", function () { status("live"); });
    source.addEventListener("incidents", function (e) {
      lastId = e.lastEventId || lastId;
      apply(JSON.parse(e.data));
      status("live");
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
    if (!live) { return; }  // a disconnected board does not pretend its ages are current
    ages(document.getElementById("incident-rows"));
  }, 1000);
  // --- overload: "confirmations delayed by N; cameras told to hold", kept current every 15 s ---------
  var overloadNote = document.getElementById("overload");
  function duration(seconds) {
    if (seconds < 120) { return seconds + " " + w("unit.s"); }
    if (seconds < 7200) { return Math.floor(seconds / 60) + " " + w("unit.min"); }
    return Math.floor(seconds / 3600) + " " + w("unit.h") + " " + Math.floor(seconds % 3600 / 60) + " " + w("unit.min");
  }
  function checkOverload() {
    fetch("/console/board/overload", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || !overloadNote) { return; }
        if (body.delayed_s === null) { overloadNote.hidden = true; return; }
        overloadNote.setAttribute("data-backlog-s", String(body.delayed_s));
        overloadNote.textContent = fill("board.overload", { delay: duration(body.delayed_s) });
        overloadNote.hidden = false;
      })
      .catch(function () { /* the stream's own status says when the server is away */ });
  }
  window.setInterval(checkOverload, 15000);
  // --- candidates the server could not check: the list, fetched again every 10 s -------------------
  // The server renders it (_unchecked.html, in the page's language); a camera whose newest candidate
  // is newer than anything this page has seen flashes and is announced like a new incident.
  var uncheckedHtml = null;
  var uncheckedSeen = (document.getElementById("unchecked") || root).getAttribute("data-newest") || "";
  function refreshUnchecked() {
    fetch("/console/board/unchecked", { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var current = document.getElementById("unchecked");
        if (html === null || html === uncheckedHtml || !current) { return; }
        uncheckedHtml = html;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("unchecked");
        if (!next) { return; }
        var newest = uncheckedSeen;
        Array.prototype.forEach.call(next.querySelectorAll("tr.unchecked-camera"), function (row) {
          var through = row.getAttribute("data-through") || "";
          if (Date.parse(through) > (Date.parse(uncheckedSeen) || 0)) {
            row.classList.add("fresh");
            announceUnchecked(row);
          }
          if (Date.parse(through) > (Date.parse(newest) || 0)) { newest = through; }
        });
        uncheckedSeen = newest;
        current.replaceWith(document.importNode(next, true));
        var jump = document.getElementById("unchecked-jump");
        var waiting = Number(next.getAttribute("data-candidates") || "0");
        if (jump) {
          jump.textContent = fill("unchecked.jump", { n: waiting });
          jump.hidden = waiting === 0;
        }
      })
      .catch(function () { /* the stream's own status says when the server is away */ });
  }
  function announceUnchecked(row) {
    var kinds = (row.getAttribute("data-kinds") || "").split(" ").filter(Boolean).map(function (k) { return w("kind." + k); });
    showCue(w("board.new_unchecked") + ": " + kinds.join(", ") + " · " + (row.getAttribute("data-venue") || ""));
  }
  window.setInterval(refreshUnchecked, 10000);
  // "Raise the alarm" rings phones: asked once more (the list is redrawn, so the listener sits on the page)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form && form.classList && form.classList.contains("raise") && !window.confirm(form.getAttribute("data-confirm") || "")) {
      event.preventDefault();
    }
  });
  window.kuzetBoard = { draw: draw, count: function () { return Object.keys(incidents).length; }, refreshUnchecked: refreshUnchecked };
})();
