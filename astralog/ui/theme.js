// Runs before first paint (a blocking classic script: CSP forbids inline ones) so the page never
// flashes the wrong theme. A choice made with the toggle wins over the system preference.
(function () {
  var root = document.documentElement;
  var media = window.matchMedia("(prefers-color-scheme: dark)");
  function chosen() {
    try {
      var theme = localStorage.getItem("astralog.theme");
      if (theme === "light" || theme === "dark") return theme;
    } catch (e) {
      /* storage disabled: follow the system */
    }
    return null;
  }
  function apply() {
    root.dataset.theme = chosen() || (media.matches ? "dark" : "light");
  }
  apply();
  media.addEventListener("change", apply);
  window.astralogTheme = { apply: apply };
})();
