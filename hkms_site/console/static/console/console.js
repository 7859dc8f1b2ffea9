/* HKMS console: the few behaviours that need a script.  Served from 'self' (CSP: no inline
   script).  Every page works without it: values are then unmasked-on-demand impossible but
   still typed, every typed value form is shown, and copying is done by selecting. */
(function () {
  "use strict";

  // New secret: show only the value form of the chosen type.
  function typedValueForms() {
    var select = document.getElementById("id_type");
    var sets = document.querySelectorAll("fieldset.first-value[data-type]");
    if (!select || !sets.length) return;
    function sync() {
      sets.forEach(function (fs) {
        var on = fs.getAttribute("data-type") === select.value;
        fs.hidden = !on;
        fs.disabled = !on; // disabled fieldsets are not submitted
      });
    }
    select.addEventListener("change", sync);
    sync();
  }

  // Masked inputs: a "Show" / "Hide" button beside each secret field.
  function maskToggles() {
    document.querySelectorAll("textarea[data-masked], .first-value input[type=password], " +
                              "#console-form input[type=password]").forEach(function (field) {
      if (field.dataset.toggle) return;
      field.dataset.toggle = "1";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button small mask-toggle";
      button.textContent = "Show";
      button.setAttribute("aria-controls", field.id);
      button.addEventListener("click", function () {
        var hidden = field.tagName === "TEXTAREA" ? field.classList.toggle("masked") : field.type === "text";
        if (field.tagName !== "TEXTAREA") field.type = hidden ? "password" : "text";
        button.textContent = hidden ? "Show" : "Hide";
      });
      field.insertAdjacentElement("afterend", button);
    });
  }

  // Reveal page: copy a revealed value to the clipboard.
  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) return;
        var text = source.textContent;
        function done(ok) {
          button.textContent = ok ? "Copied" : "Select and copy by hand";
          setTimeout(function () { button.textContent = "Copy"; }, 2000);
        }
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
        } else {
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          var ok = false;
          try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
          selection.removeAllRanges();
          done(ok);
        }
      });
    });
  }

  function ready() {
    typedValueForms();
    maskToggles();
    copyButtons();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
