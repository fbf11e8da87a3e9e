// The spanqa web page: sign in, ask, search passages, look at answers on their pages, manage files.
//
// Server text (answers, contexts, file names, error details) only ever goes into the page as
// textContent, never as HTML, so a document cannot inject markup or script.

import { api, ApiError, forgetToken, storedToken, storeToken } from "./api.js";
import { FilesView } from "./files.js";
import { TrainingView } from "./training.js";
import { $, busy, button, element, say, showAlert } from "./ui.js";
import { PageViewer } from "./viewer.js";

const state = { me: null }; // me: GET /v1/me of the signed-in token (null: signed out)

// -- messages ---------------------------------------------------------------------------------

function reportError(error) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    showAlert(`Something went wrong in this page: ${error?.message ?? error}`);
    return;
  }
  if (error.mustSignIn && state.me !== null && state.me.auth) {
    signOut({ alert: `You are signed out: ${error.detail}. Sign in again.` });
    return;
  }
  if (error.retryable) {
    const wait = error.retryAfter === null ? "a few seconds" : `${error.retryAfter} s`;
    const why = error.status === 0 ? error.detail : `the server is busy (${error.detail})`;
    showAlert(`Could not finish: ${why}. Please retry in ${wait}.`);
    return;
  }
  showAlert(`Error ${error.status} (${error.code}): ${error.detail}`);
}

const formatScore = (score) => (Math.abs(score) >= 10 ? score.toFixed(1) : score.toFixed(3));

// -- signing in -------------------------------------------------------------------------------

function showOnly(id) {
  for (const part of ["signin-view", "loading-view", "work"]) {
    $(part).hidden = part !== id;
  }
  const signedIn = id === "work";
  $("views").hidden = !signedIn;
  $("who").hidden = !signedIn;
}

// `alert`: why the user was signed out (an error); `status`: a plain confirmation.
function signOut({ alert = "", status = "" } = {}) {
  forgetToken();
  state.me = null;
  viewer.close();
  files.reset();
  for (const list of ["answers", "passages"]) {
    $(list).replaceChildren();
  }
  for (const note of ["answers-note", "passages-note"]) {
    $(note).hidden = true;
  }
  $("question-input").value = "";
  $("search-input").value = "";
  say(status);
  showAlert(alert);
  showOnly("signin-view");
  $("token-input").value = "";
  $("token-input").focus();
}

function enter(me) {
  state.me = me;
  const admin = me.role === "admin";
  $("who-text").textContent = me.auth ? `Signed in as ${me.name} (${me.role})` : "Open server (no sign-in)";
  $("sign-out").hidden = !me.auth;
  document.querySelector('[data-view="files"]').hidden = !admin;
  showOnly("work");
  switchView("ask");
  $("question-input").focus();
}

async function start() {
  const token = storedToken();
  try {
    // Without a stored token this tells whether the server wants one at all (auth: false).
    enter(await api("/v1/me", { token: token ?? null }));
  } catch (error) {
    if (error instanceof ApiError && error.mustSignIn) {
      signOut({ alert: token === null ? "" : "Your session ended: sign in again." });
    } else {
      showOnly("signin-view");
      reportError(error);
    }
  }
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (token === "") {
    showAlert("Enter your access token.");
    return;
  }
  try {
    const me = await api("/v1/me", { token });
    storeToken(token);
    showAlert("");
    enter(me);
  } catch (error) {
    if (error instanceof ApiError && error.mustSignIn) {
      showAlert(`That token was not accepted: ${error.detail}.`);
      $("token-input").select();
    } else {
      reportError(error);
    }
  }
}

// -- views ------------------------------------------------------------------------------------

function switchView(view) {
  say("");
  for (const name of ["ask", "passages", "files"]) {
    $(`${name}-view`).hidden = name !== view;
    const tab = document.querySelector(`[data-view="${name}"]`);
    if (name === view) {
      tab.setAttribute("aria-current", "true");
    } else {
      tab.removeAttribute("aria-current");
    }
  }
  viewer.close();
  if (view === "files") {
    files.load();
    training.load();
  }
}

function placeLine(item) {
  // An answer carries a calibrated confidence when the index has an answer calibration.
  const confidence = typeof item.confidence === "number" ? ` · confidence ${Math.round(100 * item.confidence)}%` : "";
  return `${item.name} · page ${item.page} · score ${formatScore(item.score)}${confidence}`;
}

function pageAction(item, what) {
  // The server says the type it indexed the file as (an upload named .pdf may be text).
  const isPdf = item.file_type === "pdf";
  if (!isPdf) {
    return element("p", "note no-image", `No page image: ${item.name} is a text file, not a PDF.`);
  }
  const action = button("Show on page", () => {
    viewer.open({ fileId: item.file_id, name: item.name, page: item.page, highlight: item.highlight,
      highlightError: item.highlight_error ?? null, what }, action)
      .catch(reportError);
  }, "show-page");
  action.setAttribute("aria-label", `Show ${what} on page ${item.page} of ${item.name}`);
  return action;
}

// -- asking -----------------------------------------------------------------------------------

function contextWithMark(answer) {
  const context = element("p", "context");
  const text = answer.context;
  const start = answer.answer_start_in_context;
  const end = answer.answer_end_in_context;
  if (!(0 <= start && start < end && end <= text.length)) {
    context.textContent = text;
    return context;
  }
  context.append(text.slice(0, start), element("mark", "", text.slice(start, end)), text.slice(end));
  return context;
}

function feedbackControls(question, answer, rank) {
  const group = element("div", "feedback");
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", `Feedback on answer ${rank}`);
  const status = element("span", "feedback-status");
  status.setAttribute("role", "status");
  const send = async (correct, chosen, other) => {
    chosen.disabled = true;
    other.disabled = true;
    try {
      const place = { file_id: answer.file_id, page: answer.page, start: answer.start, end: answer.end, text: answer.text };
      await api("/v1/feedback", { method: "POST", json: { question, answer: place, correct } });
      chosen.setAttribute("aria-pressed", "true");
      other.setAttribute("aria-pressed", "false");
      status.textContent = correct ? "Thanks: marked correct." : "Thanks: marked wrong.";
      group.dataset.sent = correct ? "correct" : "wrong";
    } catch (error) {
      reportError(error);
    } finally {
      chosen.disabled = false;
      other.disabled = false;
      if (chosen.isConnected && document.activeElement === document.body) {
        chosen.focus(); // disabling it had dropped the focus
      }
    }
  };
  const right = button("Correct", () => send(true, right, wrong), "secondary feedback-correct");
  const wrong = button("Wrong", () => send(false, wrong, right), "secondary feedback-wrong");
  right.setAttribute("aria-label", `Answer ${rank} is correct`);
  wrong.setAttribute("aria-label", `Answer ${rank} is wrong`);
  group.append(element("span", "feedback-label", "Right answer?"), right, wrong, status);
  return group;
}

function answerItem(question, answer, rank) {
  const item = element("li", "result answer");
  Object.assign(item.dataset, {
    fileId: answer.file_id, page: String(answer.page), start: String(answer.start), end: String(answer.end),
  });
  const head = element("div", "result-head");
  head.append(element("span", "rank", `${rank}`), element("h3", "answer-text", answer.text));
  item.append(head, element("p", "meta", placeLine(answer)), contextWithMark(answer));
  const others = (answer.sources ?? []).slice(1);
  if (others.length > 0) {
    const where = others.map((place) => `${place.name} p. ${place.page}`).join("; ");
    item.append(element("p", "meta also", `Also found in: ${where}`));
  }
  const actions = element("div", "actions");
  actions.append(pageAction(answer, "answer"), feedbackControls(question, answer, rank));
  item.append(actions);
  return item;
}

async function ask(event) {
  event.preventDefault();
  const form = $("ask-form");
  const question = $("question-input").value.trim();
  if (question === "") {
    showAlert("Type a question first.");
    return;
  }
  showAlert("");
  say("Looking for answers…");
  busy(form, true);
  $("answers-area").setAttribute("aria-busy", "true");
  try {
    const body = await api("/v1/ask", {
      method: "POST", json: { question, top_k: Number($("top-k").value) },
    });
    viewer.close();
    const items = body.answers.map((answer, index) => answerItem(body.question, answer, index + 1));
    $("answers").replaceChildren(...items);
    const note = $("answers-note");
    note.hidden = false;
    note.textContent = items.length === 0
      ? "No answer found in the documents you can read. Try other words, or search the passages."
      : `${items.length} answer${items.length === 1 ? "" : "s"} to “${body.question}”, best first.`;
    say(items.length === 0 ? "No answer found." : `${items.length} answer${items.length === 1 ? "" : "s"} found.`);
  } catch (error) {
    say("");
    reportError(error);
  } finally {
    busy(form, false);
    $("answers-area").removeAttribute("aria-busy");
  }
}

// -- passages ---------------------------------------------------------------------------------

function passageItem(passage, rank) {
  const item = element("li", "result passage");
  Object.assign(item.dataset, { fileId: passage.file_id, page: String(passage.page) });
  const head = element("div", "result-head");
  head.append(element("span", "rank", `${rank}`), element("h3", "passage-place", `${passage.name}, page ${passage.page}`));
  const actions = element("div", "actions");
  actions.append(pageAction(passage, "passage"));
  item.append(head, element("p", "meta", `score ${formatScore(passage.score)}`),
    element("p", "context passage-text", passage.text), actions);
  return item;
}

async function search(event) {
  event.preventDefault();
  const form = $("search-form");
  const query = $("search-input").value.trim();
  if (query === "") {
    showAlert("Type something to search for.");
    return;
  }
  showAlert("");
  busy(form, true);
  try {
    const body = await api("/v1/search", { method: "POST", json: { query } });
    viewer.close();
    $("passages").replaceChildren(...body.passages.map((passage, index) => passageItem(passage, index + 1)));
    const note = $("passages-note");
    note.hidden = false;
    note.textContent = body.passages.length === 0
      ? "No passage found."
      : `${body.passages.length} passage(s) for “${body.query}”, most related first.`;
  } catch (error) {
    reportError(error);
  } finally {
    busy(form, false);
  }
}

// -- wiring -----------------------------------------------------------------------------------

const viewer = new PageViewer(reportError);
const files = new FilesView({
  reportError, isAdmin: () => state.me?.role === "admin", signedIn: () => state.me !== null,
});
const training = new TrainingView({ reportError, isAdmin: () => state.me?.role === "admin" });
$("signin-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut({ status: "You are signed out." }));
$("ask-form").addEventListener("submit", ask);
$("search-form").addEventListener("submit", search);
for (const tab of document.querySelectorAll(".view-button")) {
  tab.addEventListener("click", () => switchView(tab.dataset.view));
}
start();
