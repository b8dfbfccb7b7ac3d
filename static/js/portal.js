/* Insurer portal: checks a resident ID as it is typed (GB 11643-1999: birth date and the ISO 7064
   MOD 11-2 check character). The server checks again; this only helps the person typing. */
(function () {
  "use strict";
  var WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  var CHECK = "10X98765432";

  function problem(value) {
    if (!/^[0-9]{0,17}[0-9Xx]?$/.test(value)) return "format";
    if (value.length < 18) return "short";
    var y = +value.substr(6, 4), m = +value.substr(10, 2), d = +value.substr(12, 2);
    var born = new Date(Date.UTC(y, m - 1, d));
    if (y < 1900 || born.getUTCMonth() !== m - 1 || born.getUTCDate() !== d || born > new Date()) return "date";
    var sum = 0;
    for (var i = 0; i < 17; i++) sum += (+value[i]) * WEIGHTS[i];
    if (CHECK[sum % 11] !== value[17].toUpperCase()) return "check";
    return null;
  }

  function attach(input) {
    var note = document.getElementById("resident-id-check");
    if (!note) return;
    input.setAttribute("aria-describedby", (input.getAttribute("aria-describedby") || "") + " resident-id-check");
    input.addEventListener("input", function () {
      // The server's error from the last submission ("required", "not valid") no longer describes what is
      // in the field: the live check below replaces it.
      var stale = document.getElementById(input.id + "_error");
      if (stale) {
        stale.remove();
        input.setAttribute("aria-describedby", input.getAttribute("aria-describedby").replace(input.id + "_error", "").trim());
      }
      var value = input.value.trim();
      if (!value) { note.textContent = ""; note.className = "id-check"; input.removeAttribute("aria-invalid"); return; }
      var issue = problem(value);
      note.textContent = note.dataset[issue ? "msg" + issue.charAt(0).toUpperCase() + issue.slice(1) : "msgOk"];
      note.className = "id-check " + (issue === null ? "ok" : issue === "short" ? "pending" : "bad");
      if (issue && issue !== "short") input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    });
  }

  function copyButton(button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      field.select();
      var done = function () {
        var note = document.createElement("span");
        note.className = "copied";
        note.setAttribute("role", "status");
        note.textContent = button.dataset.copied;
        button.after(note);
      };
      if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(done, function () {});
      else if (document.execCommand("copy")) done();
    });
  }

  // Behaviour lives here rather than in inline handlers, so a strict Content-Security-Policy holds.
  function behaviours() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
    document.querySelectorAll("input[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
    document.querySelectorAll("input[data-reveal-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.type = "text"; input.select(); });
      input.addEventListener("blur", function () { input.type = "password"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    behaviours();
    document.querySelectorAll("input[data-resident-id]").forEach(attach);
    document.querySelectorAll("button[data-copy]").forEach(copyButton);
  });
})();
