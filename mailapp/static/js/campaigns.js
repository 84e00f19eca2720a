// Campaign pages: the browser's timezone for scheduling, the recipients preview on the form, live
// progress on the campaign page.
(function () {
  "use strict";

  // Scheduling: the datetime-local value is wall-clock time in the zone chosen beside it (app.js
  // preselects the browser's when there is none); the browser's UTC offset on the chosen date goes
  // along as the server's fallback.
  document.querySelectorAll("input[data-local-datetime]").forEach((input) => {
    const form = input.form;
    const zoneField = form.querySelector("[data-browser-timezone]");
    const offsetField = form.querySelector("input[data-browser-offset]");
    const fill = () => {
      const chosen = input.value ? new Date(input.value) : new Date();
      offsetField.value = Number.isNaN(chosen.getTime()) ? "" : String(chosen.getTimezoneOffset());
    };
    // The wall clock of a moment in a zone (the browser's when the zone is "" or unknown).
    const wallClock = (moment, zone) => {
      let parts;
      try {
        parts = new Intl.DateTimeFormat("en-CA", {
          timeZone: zone || undefined, hourCycle: "h23",
          year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        }).formatToParts(moment);
      } catch (error) {
        return wallClock(moment, "");
      }
      const part = (type) => parts.find((p) => p.type === type).value;
      return `${part("year")}-${part("month")}-${part("day")}T${part("hour")}:${part("minute")}`;
    };
    if (!input.value) {
      // The current schedule when rescheduling (in its zone), else an hour from now.
      const current = input.dataset.current ? new Date(input.dataset.current) : null;
      const start = current && !Number.isNaN(current.getTime()) ? current : new Date(Date.now() + 3600 * 1000);
      input.value = wallClock(start, zoneField ? zoneField.value : "");
    }
    fill();
    input.addEventListener("change", fill);
    form.addEventListener("submit", fill);
  });

  // Recipients preview: how many active subscribers the chosen lists give, each once.
  const listPicker = document.querySelector("[data-recipients-url]");
  const preview = document.getElementById("recipients-preview");
  if (listPicker && preview) {
    const update = () => {
      const chosen = Array.from(listPicker.querySelectorAll("input[type=checkbox]:checked")).map((box) => box.value);
      if (!chosen.length) {
        preview.textContent = "Choose lists to see how many active subscribers will get it (each once).";
        return;
      }
      const params = new URLSearchParams();
      chosen.forEach((id) => params.append("list_ids", id));
      fetch(`${listPicker.dataset.recipientsUrl}?${params}`, { credentials: "same-origin" })
        .then((response) => response.json())
        .then((body) => {
          const count = body.recipients.toLocaleString();
          preview.textContent = `${count} active recipient${body.recipients === 1 ? "" : "s"} right now, each sent once even when on several lists.`;
        })
        .catch(() => {
          preview.textContent = "Could not count the recipients just now.";
        });
    };
    listPicker.addEventListener("change", update);
    update();
  }

  // Live progress: poll the JSON route, update counts, bar, rate and time to finish; reload when the
  // status changes so the page shows the buttons the new state allows.
  const panel = document.getElementById("campaign-progress");
  if (!panel) {
    return;
  }
  const LIVE = new Set(["scheduled", "sending", "paused"]);
  const POLL_MS = 1500;
  let previous = null;
  const set = (name, text) => {
    const el = panel.querySelector(`[data-stat="${name}"]`);
    if (el) {
      el.textContent = text;
    }
  };
  const duration = (seconds) => {
    if (!Number.isFinite(seconds) || seconds < 0) {
      return "—";
    }
    if (seconds < 60) {
      return `${Math.ceil(seconds)} s`;
    }
    if (seconds < 3600) {
      return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    }
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  };
  const render = (data) => {
    const s = data.stats;
    const total = s.total || 0;
    const remaining = s.pending + s.sending;
    if (data.status !== "draft" && data.status !== "scheduled") {
      // Before the start the page shows how many the lists would give now; keep that.
      set("total", total.toLocaleString());
    }
    set("sent", s.sent.toLocaleString());
    set("failed", s.failed.toLocaleString());
    set("pending", remaining.toLocaleString());
    const width = (n) => (total ? `${(100 * n) / total}%` : "0%");
    panel.querySelector('[data-bar="sent"]').style.width = width(s.sent);
    panel.querySelector('[data-bar="failed"]').style.width = width(s.failed);
    const reason = document.getElementById("status-reason");
    reason.textContent = data.status_reason || "";
    reason.classList.toggle("d-none", !data.status_reason);

    const now = Date.now();
    let rate = null;
    if (previous && now > previous.at) {
      const done = s.sent + s.failed - (previous.stats.sent + previous.stats.failed);
      rate = Math.max(done, 0) / ((now - previous.at) / 1000);
    }
    if ((rate === null || rate === 0) && data.status === "sending" && data.average_rate) {
      rate = data.average_rate;
    }
    if (data.status === "sending" && rate) {
      set("rate", rate.toFixed(1));
      set("eta", duration(remaining / rate));
    } else {
      set("rate", data.status === "sending" ? "…" : "—");
      set("eta", data.status === "sent" ? "done" : "—");
    }
    previous = { at: now, stats: s };
    if (data.status !== panel.dataset.status) {
      window.location.reload();
    }
  };
  const poll = () => {
    fetch(panel.dataset.progressUrl, { credentials: "same-origin", cache: "no-store" })
      .then((response) => response.json())
      .then((data) => {
        render(data);
        if (LIVE.has(data.status)) {
          window.setTimeout(poll, POLL_MS);
        }
      })
      .catch(() => window.setTimeout(poll, POLL_MS * 2));
  };
  if (LIVE.has(panel.dataset.status)) {
    poll();
  }

  // Picking a sender identity fills the sender fields (which stay editable).
  const identityPicker = document.querySelector("select[data-identities]");
  if (identityPicker) {
    const identities = JSON.parse(identityPicker.dataset.identities || "{}");
    identityPicker.addEventListener("change", () => {
      const chosen = identities[identityPicker.value];
      if (!chosen) return;
      for (const name of ["from_name", "from_email", "reply_to"]) {
        const input = identityPicker.form.querySelector(`[name="${name}"]`);
        if (input) input.value = chosen[name] || "";
      }
    });
  }
})();
