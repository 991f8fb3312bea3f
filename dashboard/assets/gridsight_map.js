// Client-side styling for the map layers (referenced from Python as {"variable": "gridsight.x"}).
// Every layer draws into its own Leaflet pane ("gs-<layer>") so the page can show/hide it with
// one CSS class, without re-sending or re-parsing its data. Vector layers are not interactive:
// a map click is resolved on the server (grid under the point, camera within a few pixels),
// which keeps clicks working through stacked canvases.
(function () {
  var PI = Math.PI, A = 6378245.0, EE = 0.00669342162296594323;

  function gcjOffset(lon, lat) {
    // The public GCJ-02 formula (same constants and terms as geo/crs.py _gcj_offset).
    var x = lon - 105.0, y = lat - 35.0, s = Math.sqrt(Math.abs(x));
    var common = (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
    var dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * s + common;
    dlat += (20.0 * Math.sin(y * PI) + 40.0 * Math.sin(y / 3.0 * PI)) * 2.0 / 3.0;
    dlat += (160.0 * Math.sin(y / 12.0 * PI) + 320.0 * Math.sin(y * PI / 30.0)) * 2.0 / 3.0;
    var dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * s + common;
    dlon += (20.0 * Math.sin(x * PI) + 40.0 * Math.sin(x / 3.0 * PI)) * 2.0 / 3.0;
    dlon += (150.0 * Math.sin(x / 12.0 * PI) + 300.0 * Math.sin(x / 30.0 * PI)) * 2.0 / 3.0;
    var rad = lat / 180.0 * PI, magic = 1 - EE * Math.sin(rad) * Math.sin(rad), sm = Math.sqrt(magic);
    dlat = (dlat * 180.0) / ((A * (1 - EE)) / (magic * sm) * PI);
    dlon = (dlon * 180.0) / (A / sm * Math.cos(rad) * PI);
    return [dlon, dlat];
  }

  function inChina(lon, lat) {
    return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
  }

  var catColors = {DISPUTE: "#f78c6b", SECURITY: "#ef476f", SAFETY: "#ff4d4d", ENV: "#06d6a0",
                   CITY: "#4cc9f0", SPECIAL_GROUPS: "#b39ddb", CAMPUS: "#ffd166",
                   EMERGENCY: "#ff0054", SERVICE: "#90be6d"};

  function ramp(t) {
    // dark blue -> amber -> red, for counts 0..max
    var stops = [[27, 53, 80], [40, 110, 170], [255, 200, 60], [255, 120, 40], [230, 40, 50]];
    t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    var i = Math.min(Math.floor(t), stops.length - 2), f = t - i, a = stops[i], b = stops[i + 1];
    return "rgb(" + Math.round(a[0] + (b[0] - a[0]) * f) + "," + Math.round(a[1] + (b[1] - a[1]) * f) +
      "," + Math.round(a[2] + (b[2] - a[2]) * f) + ")";
  }

  function covRamp(t) {
    // red (blind) -> yellow -> green (covered)
    var stops = [[200, 50, 60], [230, 180, 60], [60, 200, 120]];
    t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    var i = Math.min(Math.floor(t), stops.length - 2), f = t - i, a = stops[i], b = stops[i + 1];
    return "rgb(" + Math.round(a[0] + (b[0] - a[0]) * f) + "," + Math.round(a[1] + (b[1] - a[1]) * f) +
      "," + Math.round(a[2] + (b[2] - a[2]) * f) + ")";
  }

  function pane(context, fallback) {
    return (context && context.pane) || fallback;
  }

  // Data (names, ids) never becomes markup: labels are DOM nodes with textContent, and any
  // value put into an HTML string goes through escapeHtml first.
  var HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"};
  function escapeHtml(value) {
    return String(value === undefined || value === null ? "" : value)
      .replace(/[&<>"']/g, function (ch) { return HTML_ESCAPES[ch]; });
  }

  window.gridsight = Object.assign(window.gridsight || {}, {
    cameraColors: {online: "#2ecc71", offline: "#e74c3c", stale: "#f39c12", unknown: "#95a5a6"},
    centerColors: {city: "#ff4d6d", county: "#ff9f1c", township: "#ffd166", village: "#06d6a0"},
    catColors: catColors,
    escapeHtml: escapeHtml,
    ramp: ramp,
    covRamp: covRamp,
    wgs84ToGcj02: function (lon, lat) {
      if (!inChina(lon, lat)) { return [lon, lat]; }
      var d = gcjOffset(lon, lat);
      return [lon + d[0], lat + d[1]];
    },
    // GeoJSON coordsToLatLng when the base map is GCJ-02 (our data is stored in WGS-84).
    gcjLatLng: function (coords) {
      var p = window.gridsight.wgs84ToGcj02(coords[0], coords[1]);
      return L.latLng(p[1], p[0]);
    },
    cameraPoint: function (feature, latlng, context) {
      var p = feature.properties || {};
      // live status from the refresh (hideout): "st" per camera id, else "base", else as loaded
      var h = (context && context.hideout) || {};
      var st = (h.st || {})[feature.id];
      var status = st !== undefined && st !== null ? st : (h.base || p.status);
      var c = window.gridsight.cameraColors[status] || "#95a5a6";
      return L.circleMarker(latlng, {radius: {1: 5, 2: 4, 3: 3.5}[p.cls] || 4,
                                     color: p.cls === 1 ? "#ffffff" : "#0b1118",
                                     weight: p.cls === 1 ? 1.2 : 1, fillColor: c, fillOpacity: 0.95,
                                     interactive: false, pane: pane(context, "gs-cameras")});
    },
    cameraCluster: function (feature, latlng, index, context) {
      var n = feature.properties.point_count;
      var size = n < 50 ? 28 : n < 500 ? 34 : 42;
      var icon = L.divIcon({html: "<div><span>" +
                                  escapeHtml(feature.properties.point_count_abbreviated) +
                                  "</span></div>", className: "gs-cluster",
                            iconSize: L.point(size, size)});
      return L.marker(latlng, {icon: icon, pane: pane(context, "gs-cameras")});
    },
    centerPoint: function (feature, latlng, context) {
      var p = feature.properties || {};
      var c = window.gridsight.centerColors[p.level] || "#ffffff";
      var r = {city: 11, county: 9, township: 6, village: 3.5}[p.level] || 3.5;
      return L.circleMarker(latlng, {radius: r, color: "#ffffff",
                                     weight: p.level === "village" ? 1 : 2, fillColor: c,
                                     fillOpacity: 1, interactive: false,
                                     pane: pane(context, "gs-centers")});
    },
    incidentPoint: function (feature, latlng, context) {
      var p = feature.properties || {};
      var c = catColors[p.cat] || "#e5edf5";
      return L.circleMarker(latlng, {radius: p.prio <= 2 ? 6 : 4.5, color: "#0b1118", weight: 1,
                                     fillColor: c, fillOpacity: p.status === "closed" ? 0.35 : 0.95,
                                     interactive: false, pane: pane(context, "gs-points")});
    },
    liveMarker: function (feature, latlng, context) {
      var p = feature.properties || {};
      var dot = document.createElement("span");
      dot.className = "gs-live-dot";
      dot.setAttribute("data-id", String(p.id));
      dot.style.background = catColors[p.cat] || "#e5edf5";
      var icon = L.divIcon({className: "gs-live", iconSize: L.point(18, 18), html: dot});
      return L.marker(latlng, {icon: icon, interactive: false, keyboard: false,
                               pane: pane(context, "gs-live")});
    },
    areaLabel: function (feature, latlng, context) {
      var p = feature.properties || {};
      var label = document.createElement("span");
      label.setAttribute("data-area", String(p.area));
      label.textContent = String(p.name === undefined || p.name === null ? "" : p.name) + " \u203a";
      var icon = L.divIcon({className: "gs-area-label", iconSize: null, html: label});
      return L.marker(latlng, {icon: icon, pane: pane(context, "gs-labels")});
    },
    gridStyle: function (feature, context) {
      var h = (context && context.hideout) || {};
      var sel = h.sel !== undefined && h.sel !== null && String(h.sel) === String(feature.id);
      var style;
      if (h.mode === "coverage") {
        var cov = (h.cov || {})[feature.id];
        style = cov === undefined || cov === null ?
          {fillColor: "#1b3550", fillOpacity: 0.2} : {fillColor: covRamp(cov), fillOpacity: 0.5};
      } else {
        var n = (h.counts || {})[feature.id] || 0;
        // log scale: a few very busy grids must not wash out the others
        var t = Math.min(1, Math.log(1 + n) / Math.log(1 + Math.max(h.max || 1, 1)));
        style = {fillColor: n === 0 ? "#1b3550" : ramp(0.25 + 0.75 * t),
                 fillOpacity: n === 0 ? 0.22 : 0.6};
      }
      style.color = sel ? "#ffffff" : "#3d6a99";
      style.weight = sel ? 3 : 0.6;
      return style;
    },
    areaStyle: function () {
      return {color: "#7fd3ff", weight: 2, fill: false, dashArray: "4 3"};
    },
    districtStyle: function (feature, context) {
      var h = (context && context.hideout) || {};
      var sel = h.sel !== undefined && h.sel !== null && String(h.sel) === String(feature.id);
      return {color: sel ? "#ffffff" : "#7fd3ff", weight: sel ? 3 : 2, fill: false,
              dashArray: sel ? null : "6 4"};
    },
    subAreaStyle: function () {
      return {color: "#a8e6ff", weight: 1.2, fill: false, dashArray: "2 4"};
    },
    byParent: function (feature, context) {
      var h = (context && context.hideout) || {};
      return h.parent !== undefined && h.parent !== null &&
        String(feature.properties.parent_id) === String(h.parent);
    },
    coneStyle: function (feature) {
      var p = feature.properties || {};
      var c = window.gridsight.cameraColors[p.status] || "#95a5a6";
      return {color: c, weight: 0.8, fillColor: c, fillOpacity: 0.18, interactive: false};
    }
  });

  // Keep a handle on the operator map (tests and the export read its view from here).
  function hookMap(tries) {
    if (!window.L || !window.L.Map) {
      if (tries < 400) { setTimeout(function () { hookMap(tries + 1); }, 50); }
      return;
    }
    window.L.Map.addInitHook(function () {
      if (this.getContainer && this.getContainer().id === "operator-map") {
        window.gridsight.map = this;
      }
    });
  }
  hookMap(0);

  // Clientside callbacks of the operator page (viewport kept per browser in localStorage).
  window.dash_clientside = Object.assign(window.dash_clientside || {}, {
    operator: {
      saveView: function (center, zoom) {
        // nothing is saved until the stored view has been restored (the map's first
        // moveend would otherwise overwrite it with the default view)
        if (!window.gridsight.viewRestored || !center || zoom === undefined || zoom === null) {
          return window.dash_clientside.no_update;
        }
        var lat = center.lat !== undefined ? center.lat : center[0];
        var lng = center.lng !== undefined ? center.lng : center[1];
        return {center: [lat, lng], zoom: zoom};
      },
      restoreView: function (n, saved, cityBounds) {
        window.gridsight.viewRestored = true;
        if (saved && saved.center) {
          return {center: saved.center, zoom: saved.zoom, transition: "setView"};
        }
        if (cityBounds) {
          return {bounds: cityBounds, transition: "fitBounds",
                  options: {paddingTopLeft: [40, 70], paddingBottomRight: [40, 20]}};
        }
        return window.dash_clientside.no_update;
      }
    }
  });
})();
