// Client-side styling for the map layers (referenced from Python as {"variable": "gridsight.x"}).
window.gridsight = Object.assign(window.gridsight || {}, {
  cameraColors: {online: "#2ecc71", offline: "#e74c3c", stale: "#f39c12", unknown: "#95a5a6"},
  centerColors: {city: "#ff4d6d", county: "#ff9f1c", township: "#ffd166", village: "#06d6a0"},
  cameraPoint: function (feature, latlng) {
    var p = feature.properties || {};
    var c = window.gridsight.cameraColors[p.status] || "#95a5a6";
    return L.circleMarker(latlng, {radius: p.cls === 1 ? 5 : 4, color: "#0b1118", weight: 1,
                                   fillColor: c, fillOpacity: 0.95});
  },
  centerPoint: function (feature, latlng) {
    var p = feature.properties || {};
    var c = window.gridsight.centerColors[p.level] || "#ffffff";
    var r = {city: 11, county: 9, township: 7, village: 5}[p.level] || 5;
    return L.circleMarker(latlng, {radius: r, color: "#ffffff", weight: 2, fillColor: c,
                                   fillOpacity: 1});
  },
  gridStyle: function (feature, context) {
    var h = (context && context.hideout) || {};
    var counts = h.counts || {};
    var n = counts[feature.id] || 0;
    var max = h.max || 1;
    var t = Math.min(1, n / max);
    var fill = n === 0 ? "#1b3550" : "rgb(" + Math.round(60 + 195 * t) + "," + Math.round(120 - 80 * t) + "," + Math.round(160 - 120 * t) + ")";
    return {color: "#3d6a99", weight: 0.6, fillColor: fill, fillOpacity: n === 0 ? 0.25 : 0.55};
  },
  areaStyle: function () {
    return {color: "#7fd3ff", weight: 2, fill: false, dashArray: "4 3"};
  }
});
