// Small improvements on top of pages that work without JavaScript.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  ready(function () {
    // Filters and period choices apply as soon as they change.
    document.querySelectorAll("form.js-autosubmit").forEach(function (form) {
      form.addEventListener("change", function () { form.submit(); });
    });

    // Ask before destructive actions.
    document.querySelectorAll("form.js-confirm").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm") || "?")) { event.preventDefault(); }
      });
    });

    // The emergency reason and warning only while emergency access is chosen.
    var basis = document.querySelector(".js-basis");
    var box = document.getElementById("akutt-box");
    var reason = document.getElementById("begrunnelse");
    if (basis && box) {
      var update = function () {
        var chosen = basis.querySelector("input[name=grunnlag]:checked");
        var emergency = chosen && chosen.value === "akutt";
        box.hidden = !emergency;
        if (reason) { reason.required = !!emergency; }
      };
      basis.addEventListener("change", update);
      update();
    }
  });
})();
