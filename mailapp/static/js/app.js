// Dashboard behaviour shared by every page. Pages add their own scripts from static/js/.
// Times are written by the server in the account's zone, zone included (mailapp/timezones.py); the
// exact UTC moment is a hover away.
document.querySelectorAll("time[datetime]").forEach((el) => {
  el.title = el.getAttribute("datetime");
});

// Destructive actions ask first: <form data-confirm="Delete this list?">.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
});

// Checkbox lists (templates/_macros.html checklist): the filter box hides the options whose label does
// not contain what was typed. Ticked options stay visible, so a choice is never hidden. Without
// JavaScript the box stays hidden and the list simply scrolls.
document.querySelectorAll("[data-checklist]").forEach((list) => {
  const filter = list.querySelector("[data-checklist-filter]");
  if (!filter) {
    return;
  }
  const options = Array.from(list.querySelectorAll("[data-checklist-option]"));
  const none = list.querySelector("[data-checklist-none]");
  filter.hidden = false;
  filter.addEventListener("input", () => {
    const wanted = filter.value.trim().toLocaleLowerCase();
    let shown = 0;
    options.forEach((option) => {
      const box = option.querySelector("input");
      const match = !wanted || box.checked || option.textContent.toLocaleLowerCase().includes(wanted);
      option.hidden = !match;
      shown += match ? 1 : 0;
    });
    none.hidden = shown > 0;
  });
  // Enter in the filter box must not submit the form.
  filter.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
    }
  });
});

// The viewer's time zone, from the browser: sign-in sends it (a first sign-in sets the account's
// setting), and a signed-in account without one gets it saved in the background; the next page shows
// times in it. The account page changes it.
const browserTimezone = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return "";
  }
})();
document.querySelectorAll("[data-browser-timezone]").forEach((input) => {
  if (!input.value) {
    input.value = browserTimezone;
  }
});
if (document.body.dataset.fillTimezoneUrl && browserTimezone) {
  const body = new FormData();
  body.append("csrf_token", document.body.dataset.csrfToken);
  body.append("timezone", browserTimezone);
  fetch(document.body.dataset.fillTimezoneUrl, { method: "POST", body, credentials: "same-origin" }).catch(() => {
    // Not saved this time: the next page tries again.
  });
}
