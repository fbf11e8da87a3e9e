// The files view (admins): the indexed files, deleting one, uploading new ones and following their
// indexing job file by file until it is done.

import { api, seg } from "./api.js";
import { $, busy, button, element, say, showAlert } from "./ui.js";

const JOB_POLL_MS = 500;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

export class FilesView {
  // reportError(error); isAdmin() and signedIn(): the page's current sign-in.
  constructor({ reportError, isAdmin, signedIn }) {
    this.reportError = reportError;
    this.isAdmin = isAdmin;
    this.signedIn = signedIn;
    $("upload-form").addEventListener("submit", (event) => this.upload(event));
    $("files-refresh").addEventListener("click", () => this.load());
  }

  reset() {
    $("files").replaceChildren();
    $("upload-status").replaceChildren();
    $("upload-job").hidden = true;
    $("files-count").textContent = "";
  }

  async load() {
    if (!this.isAdmin()) {
      return;
    }
    try {
      const body = await api("/v1/files");
      $("files").replaceChildren(...body.files.map((file) => this.item(file)));
      $("files-count").textContent = `${plural(body.files.length, "file")} in the index.`;
    } catch (error) {
      this.reportError(error);
    }
  }

  item(file) {
    const item = element("li", "file");
    Object.assign(item.dataset, { fileId: file.id, name: file.name });
    const indexed = file.indexed_at ? ` · indexed ${file.indexed_at.replace("T", " ").slice(0, 16)}` : "";
    const text = element("div", "file-text");
    const about = `${file.file_type || "file"} · ${plural(file.pages, "page")} · ${plural(file.chunks, "chunk")}${indexed}`;
    text.append(element("strong", "file-name", file.name), element("span", "meta", about));
    const remove = button("Delete", () => this.remove(file, remove), "danger");
    remove.setAttribute("aria-label", `Delete ${file.name}`);
    item.append(text, remove);
    return item;
  }

  async remove(file, control) {
    if (!window.confirm(`Delete “${file.name}” from the index? Questions will no longer find it.`)) {
      return;
    }
    control.disabled = true;
    try {
      const body = await api(`/v1/files/${seg(file.id)}`, { method: "DELETE" });
      say(`Deleted ${body.deleted.name}.`);
      await this.load();
      $("files-title").focus(); // the focused button is gone with its row
    } catch (error) {
      control.disabled = false;
      this.reportError(error);
    }
  }

  showJob(job) {
    $("upload-job").hidden = false;
    const counts = new Map();
    for (const file of job.files) {
      counts.set(file.status, (counts.get(file.status) ?? 0) + 1);
    }
    const summary = [...counts].map(([status, count]) => `${count} ${status}`).join(", ");
    const detail = job.detail ? `: ${job.detail}` : "";
    $("upload-job-text").textContent = `Upload ${job.status}${detail} (${summary}).`;
    $("upload-job").dataset.status = job.status;
    $("upload-status").replaceChildren(...job.files.map((file) => {
      const item = element("li", `job-file status-${file.status}`);
      Object.assign(item.dataset, { name: file.name, status: file.status });
      item.append(element("strong", "", file.name), ` — ${file.status}`);
      if (file.reason) {
        item.append(element("span", "reason", `: ${file.reason}`));
      }
      return item;
    }));
  }

  async upload(event) {
    event.preventDefault();
    const input = $("upload-input");
    if (input.files.length === 0) {
      showAlert("Choose one or more files to upload.");
      return;
    }
    const form = new FormData();
    for (const file of input.files) {
      form.append("files", file, file.name);
    }
    const folder = $("upload-folder").value.trim();
    if (folder !== "") {
      form.append("folder", folder);
    }
    showAlert("");
    busy($("upload-form"), true);
    try {
      let job = await api("/v1/files", { method: "POST", body: form });
      this.showJob(job);
      while (job.status === "queued" || job.status === "running") {
        await pause(JOB_POLL_MS);
        if (!this.signedIn()) {
          return;
        }
        job = await api(`/v1/jobs/${seg(job.job)}`);
        this.showJob(job);
      }
      say(`Upload ${job.status}.`);
      input.value = "";
      await this.load();
    } catch (error) {
      this.reportError(error);
    } finally {
      busy($("upload-form"), false);
    }
  }
}
