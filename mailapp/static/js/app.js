// Dashboard behaviour shared by every page. Pages add their own scripts from static/js/.
document.querySelectorAll("time[datetime]").forEach((el) => {
  const when = new Date(el.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) {
    el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    el.title = el.getAttribute("datetime");
  }
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
