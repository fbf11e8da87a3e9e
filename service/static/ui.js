// Small DOM helpers shared by the page's modules. Text always goes in as textContent.

export const $ = (id) => document.getElementById(id);

export function showAlert(text) {
  const alert = $("alert");
  alert.textContent = text;
  alert.hidden = text === "";
}

export function say(text) {
  $("status").textContent = text;
}

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export function button(label, handler, className) {
  const node = element("button", className, label);
  node.type = "button";
  node.addEventListener("click", handler);
  return node;
}

// Disables a form's controls while its request runs. Disabling the focused control drops focus to
// the body; it is given back afterwards, so a keyboard user stays where they were.
const focusedBefore = new WeakMap();

export function busy(form, on) {
  if (on && form.contains(document.activeElement)) {
    focusedBefore.set(form, document.activeElement);
  }
  for (const control of form.querySelectorAll("button, input, select")) {
    control.disabled = on;
  }
  form.setAttribute("aria-busy", String(on));
  const focused = focusedBefore.get(form);
  if (!on && focused !== undefined) {
    focusedBefore.delete(form);
    if (focused.isConnected && !focused.closest("[hidden]")
        && (document.activeElement === document.body || document.activeElement === null)) {
      focused.focus();
    }
  }
}
