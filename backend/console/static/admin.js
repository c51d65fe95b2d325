/* Admin forms: pick a venue's position on a map (tiles where configured, else the regions'
   outlines and the venues); the latitude and longitude fields follow the click. */
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll(".venue-form"), function (form) {
    var box = form.querySelector(".pick-map");
    var lat = form.querySelector(".pick-lat");
    var lon = form.querySelector(".pick-lon");
    if (!box || !lat || !lon || !window.L) { return; }
    function number(input) { return parseFloat(String(input.value).replace(",", ".")); }
    var start = isFinite(number(lat)) && isFinite(number(lon)) ? [number(lat), number(lon)] : [43.2389, 76.8897];
    var map = L.map(box, { center: start, zoom: 13 });
    var tiles = box.getAttribute("data-tiles");
    if (tiles) {
      L.tileLayer(tiles, { maxZoom: 19 }).addTo(map);
    } else {
      map.attributionControl.setPrefix(false);
      fetch("/console/board/outline", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (outline) {
          if (!outline) { return; }
          L.geoJSON(outline.regions, { interactive: false, style: function () { return { color: "#5f7386", weight: 2, fillOpacity: 0.3, dashArray: "6 4" }; } }).addTo(map);
          outline.venues.forEach(function (v) {
            var el = document.createElement("span");
            el.className = "venue-label";
            el.textContent = v.name;
            L.marker([v.lat, v.lon], { interactive: false, keyboard: false, icon: L.divIcon({ className: "map-text", html: el, iconSize: null }) }).addTo(map);
          });
        })
        .catch(function () { /* typing the position still works */ });
    }
    var marker = L.circleMarker(start, { radius: 8, color: "#0b57d0", fillOpacity: 0.7 }).addTo(map);
    map.on("click", function (e) {
      marker.setLatLng(e.latlng);
      lat.value = e.latlng.lat.toFixed(6);
      lon.value = e.latlng.lng.toFixed(6);
    });
    function follow() {
      var a = number(lat);
      var b = number(lon);
      if (isFinite(a) && isFinite(b)) { marker.setLatLng([a, b]); map.panTo([a, b]); }
    }
    lat.addEventListener("change", follow);
    lon.addEventListener("change", follow);
  });
})();
