// Reader training (admins, in the files view): start a run on the collected feedback, follow its
// progress, stop it, and go back to the reader it replaced.

import { api } from "./api.js";
import { $ } from "./ui.js";

const POLL_MS = 1000;
const RUNNING = ["running", "stopping"];

function percent(value) {
  return `${(100 * value).toFixed(1)}`;
}

// One line for held-out figures: reader-only EM, and end to end reading the most passages.
function figures(result) {
  if (!result) {
    return "";
  }
  const counts = Object.keys(result.end_to_end || {}).map(Number).sort((a, b) => a - b);
  const last = counts.length ? result.end_to_end[counts[counts.length - 1]] : null;
  const endToEnd = last ? `, end to end EM ${percent(last.exact_match)}` : "";
  return `EM ${percent(result.reader_only.exact_match)}${endToEnd}`;
}

export function describe(status) {
  const serving = `Answering with ${status.serving}.`;
  switch (status.state) {
    case "running":
    case "stopping": {
      const step = status.step ? `step ${status.step} of ${status.total}, loss ${status.loss.toFixed(3)}` : "starting";
      return `${status.state === "stopping" ? "Stopping" : "Training"} (${step}). ${serving}`;
    }
    case "done": {
      const change = status.before && status.after
        ? ` Held-out questions: ${figures(status.before)} before, ${figures(status.after)} after.` : "";
      return `Trained in ${status.steps} steps.${change} ${serving}`;
    }
    case "failed":
      return `The last run failed: ${status.detail} ${serving}`;
    case "stopped":
      return `The last run was stopped. ${serving}`;
    default:
      return serving;
  }
}

export class TrainingView {
  constructor({ reportError, isAdmin }) {
    this.reportError = reportError;
    this.isAdmin = isAdmin;
    this.timer = null;
    $("training-start").addEventListener("click", () => this.act("/v1/training", { json: {} }));
    $("training-stop").addEventListener("click", () => this.act("/v1/training/stop"));
    $("training-rollback").addEventListener("click", () => this.act("/v1/training/rollback"));
  }

  async load() {
    if (!this.isAdmin()) {
      return;
    }
    try {
      this.show(await api("/v1/training"));
    } catch (error) {
      $("training").hidden = true; // a scoped admin, or a server that reads on Ray replicas
    }
  }

  async act(path, { json } = {}) {
    try {
      this.show(await api(path, { method: "POST", json }));
    } catch (error) {
      this.reportError(error);
    }
  }

  show(status) {
    $("training").hidden = false;
    $("training-text").textContent = describe(status);
    const running = RUNNING.includes(status.state);
    $("training-start").hidden = running;
    $("training-stop").hidden = status.state !== "running";
    $("training-rollback").hidden = running || !status.previous;
    clearTimeout(this.timer);
    if (running) {
      this.timer = setTimeout(() => this.load(), POLL_MS);
    }
  }
}
