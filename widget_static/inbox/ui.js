/* Page helpers of the agent app: lookups and the toast. */

export function $(selector, root) {
  return (root || document).querySelector(selector);
}

let toastTimer = null;
export function toast(message, kind) {
  const box = $("#toast");
  box.textContent = message;
  box.dataset.kind = kind || "error";
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, 5000);
}
