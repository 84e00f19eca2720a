// The segment rule builder: form controls that write the rule tree as JSON into the hidden
// #segment-rules field, and ask the server for a live count. The server validates the tree.
(function () {
  "use strict";
  const root = document.getElementById("segment-builder");
  if (!root) return;
  const hidden = document.getElementById("segment-rules");
  const countOut = document.getElementById("segment-count");
  const fields = JSON.parse(root.dataset.fields);
  const NO_VALUE = ["exists", "never_opened"];
  const NUMBER_OPS = ["gt", "gte", "lt", "lte", "within_days", "opened_within_days", "opened", "clicked",
    "not_opened", "not_clicked", "member", "not_member"];
  let tree;
  try { tree = JSON.parse(hidden.value || "{}"); } catch (e) { tree = {}; }
  if (!tree.all && !tree.any) tree = { all: tree.field ? [tree] : [] };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") node.textContent = v; else node.setAttribute(k, v); });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }
  function select(options, value, label) {
    const s = el("select", { class: "form-select form-select-sm w-auto", "aria-label": label });
    options.forEach((o) => { const opt = el("option", { value: o, text: o.replace(/_/g, " ") }); if (o === value) opt.selected = true; s.appendChild(opt); });
    return s;
  }
  function parseValue(rule, text) {
    if (rule.op === "in") return text.split(",").map((t) => t.trim()).filter(Boolean).map(scalar);
    if (NUMBER_OPS.includes(rule.op)) { const n = Number(text); return text.trim() === "" || isNaN(n) ? text : n; }
    return rule.field === "attribute" ? scalar(text) : text;
  }
  function scalar(text) {
    if (text === "true") return true;
    if (text === "false") return false;
    const n = Number(text);
    return text.trim() !== "" && !isNaN(n) && /^-?[0-9.eE+]+$/.test(text.trim()) ? n : text;
  }
  function showValue(value) {
    if (Array.isArray(value)) return value.join(", ");
    return value === undefined || value === null ? "" : String(value);
  }
  function ruleRow(rule, parent, index) {
    const row = el("div", { class: "d-flex flex-wrap gap-2 align-items-center mb-2", "data-testid": "segment-rule" });
    const fieldSel = select(Object.keys(fields), rule.field, "Field");
    fieldSel.addEventListener("change", () => { parent[index] = { field: fieldSel.value, op: fields[fieldSel.value][0] }; if (fieldSel.value === "attribute") parent[index].key = ""; changed(); });
    row.appendChild(fieldSel);
    if (rule.field === "attribute") {
      const key = el("input", { class: "form-control form-control-sm w-auto", placeholder: "attribute", "aria-label": "Attribute", value: rule.key || "" });
      key.addEventListener("input", () => { rule.key = key.value; write(); });
      row.appendChild(key);
    }
    const opSel = select(fields[rule.field], rule.op, "Operator");
    opSel.addEventListener("change", () => { rule.op = opSel.value; if (NO_VALUE.includes(rule.op)) delete rule.value; changed(); });
    row.appendChild(opSel);
    if (!NO_VALUE.includes(rule.op)) {
      const value = el("input", { class: "form-control form-control-sm w-auto", placeholder: "value", "aria-label": "Value", value: showValue(rule.value) });
      value.addEventListener("input", () => { rule.value = parseValue(rule, value.value); write(); });
      row.appendChild(value);
    }
    row.appendChild(removeButton(parent, index));
    return row;
  }
  function removeButton(parent, index) {
    const b = el("button", { type: "button", class: "btn btn-sm btn-outline-danger", text: "Remove" });
    b.addEventListener("click", () => { parent.splice(index, 1); changed(); });
    return b;
  }
  function groupBox(group, parent, index, depth) {
    const kind = group.all ? "all" : "any";
    const items = group[kind];
    const box = el("div", { class: "border rounded p-2 mb-2", "data-testid": "segment-group" });
    const head = el("div", { class: "d-flex gap-2 align-items-center mb-2" });
    const kindSel = select(["all", "any"], kind, "Match");
    kindSel.addEventListener("change", () => { const g = {}; g[kindSel.value] = items; if (parent) parent[index] = g; else tree = g; changed(); });
    head.append(el("span", { text: "Match" }), kindSel, el("span", { text: "of these" }));
    const addRule = el("button", { type: "button", class: "btn btn-sm btn-outline-primary", text: "Add rule" });
    addRule.addEventListener("click", () => { items.push({ field: "status", op: "is", value: "active" }); changed(); });
    head.appendChild(addRule);
    if (depth < 4) {
      const addGroup = el("button", { type: "button", class: "btn btn-sm btn-outline-secondary", text: "Add group" });
      addGroup.addEventListener("click", () => { items.push({ any: [] }); changed(); });
      head.appendChild(addGroup);
    }
    if (parent) head.appendChild(removeButton(parent, index));
    box.appendChild(head);
    items.forEach((child, i) => box.appendChild(child.all || child.any ? groupBox(child, items, i, depth + 1) : ruleRow(child, items, i)));
    return box;
  }
  let timer;
  function write() {
    hidden.value = JSON.stringify(tree);
    clearTimeout(timer);
    timer = setTimeout(count, 400);
  }
  function changed() { render(); write(); }
  function render() { root.replaceChildren(groupBox(tree, null, 0, 1)); }
  function count() {
    const form = document.getElementById("segment-form");
    const body = new URLSearchParams({ rules: hidden.value, csrf_token: form.querySelector("[name=csrf_token]").value });
    fetch(root.dataset.countUrl, { method: "POST", body: body, credentials: "same-origin" })
      .then((r) => r.json())
      .then((data) => {
        countOut.textContent = data.error ? data.error.message : `${data.count} subscribers (${data.recipients} a send would reach)`;
      })
      .catch(() => { countOut.textContent = "unavailable"; });
  }
  render();
  write();
})();
