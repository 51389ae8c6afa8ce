// Highlight the download matching the visitor's system; the page works without this script.
(function () {
  var ua = navigator.userAgent;
  var platform = /Android/i.test(ua) ? "android" : /Mac OS X/.test(ua) ? "mac" : /Windows/.test(ua) ? "windows" : "";
  document.addEventListener("DOMContentLoaded", function () {
    var item = platform && document.querySelector('.platforms li[data-platform="' + platform + '"]');
    if (item) { item.classList.add("mine"); }
  });
})();
