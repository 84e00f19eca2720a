// Subscribers and lists pages: follow a running CSV import live.
(() => {
  const root = document.getElementById("import");
  if (!root) {
    return;
  }
  const number = new Intl.NumberFormat();
  const field = (name) => root.querySelector(`[data-field="${name}"]`);

  function render(status) {
    ["processed", "imported", "updated", "skipped", "invalid", "duplicates"].forEach((key) => {
      const el = field(key);
      if (el) {
        el.textContent = number.format(status[key]);
      }
    });
    field("status").textContent = status.status;
    const finished = status.status === "done" || status.status === "failed";
    let percent = 0;
    if (status.status === "done") {
      percent = 100;
    } else if (status.total > 0) {
      percent = Math.min(99, Math.floor((status.processed * 100) / status.total));
    }
    const bar = field("bar");
    bar.style.width = `${percent}%`;
    bar.textContent = `${percent}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(percent));
    if (finished) {
      bar.classList.remove("progress-bar-striped", "progress-bar-animated");
    }
    if (status.status === "failed") {
      bar.classList.add("bg-danger");
    }
    const failure = field("failure");
    failure.textContent = status.failure || "";
    failure.classList.toggle("d-none", !status.failure);
    const parts = field("parts");
    if (parts && status.parts) {
      parts.replaceChildren();
      status.parts.forEach((part) => {
        const row = parts.insertRow();
        row.insertCell().textContent = String(part.part + 1);
        ["processed", "imported", "updated", "skipped", "invalid"].forEach((key) => {
          row.insertCell().textContent = number.format(part[key]);
        });
      });
      field("parts-section").classList.toggle("d-none", status.parts.length < 2);
    }
    const body = field("errors");
    body.replaceChildren();
    if (status.errors.length === 0) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 3;
      cell.className = "text-body-secondary";
      cell.textContent = finished ? "None." : "None so far.";
    }
    status.errors.forEach((error) => {
      const row = body.insertRow();
      [error.line, error.email, error.reason].forEach((value) => {
        row.insertCell().textContent = value;
      });
    });
    return finished;
  }

  async function poll() {
    try {
      const response = await fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok && render(await response.json())) {
        return;
      }
    } catch (error) {
      // A dropped connection: try again on the next tick.
    }
    window.setTimeout(poll, 1000);
  }

  if (root.dataset.status !== "done" && root.dataset.status !== "failed") {
    window.setTimeout(poll, 500);
  }
})();

// Typed attribute rows on the subscriber form: "Add attribute" copies the blank last row, and a row's
// value input follows its type (a date picker for dates).
(function () {
  "use strict";
  const rows = document.getElementById("attribute-rows");
  const add = document.getElementById("add-attribute");
  if (!rows || !add) return;
  function follow(row) {
    const type = row.querySelector("[name=attr_row_type]");
    const value = row.querySelector("[name=attr_row_value]");
    const apply = () => { value.type = type.value === "date" ? "date" : type.value === "number" ? "number" : "text"; if (type.value === "number") value.step = "any"; };
    type.addEventListener("change", apply);
    apply();
  }
  rows.querySelectorAll(".attribute-row").forEach(follow);
  add.addEventListener("click", () => {
    const blank = rows.lastElementChild.cloneNode(true);
    blank.querySelectorAll("input").forEach((input) => { input.value = ""; });
    blank.querySelector("[name=attr_row_type]").value = "text";
    rows.appendChild(blank);
    follow(blank);
  });
})();
