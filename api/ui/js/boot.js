// The console's one classic script, run before its modules: when one of them cannot be loaded (a
// request that failed while the page loaded: the API restarting, a dropped connection, a module
// the server lacks), the browser runs none, and the page read "Loading…" for ever without a word.
// Said instead, and the page is loaded again after a moment, up to RELOADS times in a row (app.js
// resets the count once it runs).
"use strict";
(function () {
  var KEY = "dw.console.reloads";
  var RELOADS = 5;
  window.addEventListener(
    "error",
    function (event) {
      var script = event.target;
      // A module of the console's graph (app.js or any module it imports): resource errors reach
      // the window in the capture phase only.
      if (!(script instanceof HTMLScriptElement) || script.type !== "module") return;
      var tries = Number(sessionStorage.getItem(KEY)) || 0;
      var again = tries < RELOADS;
      var banner = document.getElementById("problem");
      var main = document.getElementById("main");
      var text = "The console's scripts could not all be loaded (a request failed while the page loaded). ";
      text += again ? "Loading the page again…" : "Tried " + RELOADS + " times: reload the page once the API answers.";
      var strong = document.createElement("strong");
      strong.textContent = "Error";
      banner.replaceChildren(strong, " ", text);
      banner.dataset.status = "";
      banner.hidden = false;
      if (!again) {
        if (main) main.replaceChildren();
        sessionStorage.removeItem(KEY);
        return;
      }
      sessionStorage.setItem(KEY, String(tries + 1));
      // 0.5 s, then 1, 2, 4, 8: a restarting API has time to come back.
      setTimeout(function () {
        location.reload();
      }, 500 * Math.pow(2, tries));
    },
    true,
  );
})();
