/* 业主服务台 — live updates (server-sent events), chat composer, notifications. No framework. */
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return; // the login page
  var csrf = meta.content;
  var body = document.body;
  var page = body.dataset.page;
  var errorBox = document.getElementById("error-box");

  function showError(text) {
    if (!errorBox) { alert(text); return; }
    errorBox.textContent = text;
    errorBox.hidden = false;
    window.clearTimeout(showError.t);
    showError.t = window.setTimeout(function () { errorBox.hidden = true; }, 8000);
  }

  function api(method, url, data) {
    var opts = { method: method, credentials: "same-origin",
                 headers: { "Accept": "application/json", "X-CSRF-Token": csrf, "X-Requested-With": "fetch" } };
    if (data !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(data);
    }
    return fetch(url, opts).then(function (r) {
      if (r.status === 401) { window.location = "/console/login?next=" + encodeURIComponent(location.pathname); }
      return r.json().catch(function () { return {}; }).then(function (j) { j._status = r.status; return j; });
    });
  }

  // --- confirmations -------------------------------------------------------------------------
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });

  // --- notifications and sound --------------------------------------------------------------
  var audio = null;
  var toggle = document.getElementById("notify-toggle");
  function notifyOn() { return localStorage.getItem("yezhu-notify") === "1"; }
  function renderToggle() { if (toggle) toggle.textContent = notifyOn() ? "提醒已开启" : "开启提醒"; }
  renderToggle();
  if (toggle) toggle.addEventListener("click", function () {
    if (notifyOn()) { localStorage.setItem("yezhu-notify", "0"); renderToggle(); return; }
    localStorage.setItem("yezhu-notify", "1");
    try { audio = audio || new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { audio = null; }
    if (window.Notification && Notification.permission === "default") Notification.requestPermission();
    renderToggle();
    beep(1);
  });
  function beep(times) {
    if (!notifyOn()) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      for (var i = 0; i < times; i++) {
        var o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = times > 1 ? 988 : 660;
        g.gain.value = 0.12;
        o.connect(g); g.connect(audio.destination);
        var t = audio.currentTime + i * 0.3;
        o.start(t); o.stop(t + 0.18);
      }
    } catch (e) { /* no audio: the badge still shows */ }
  }
  function alertNew(item) {
    var urgent = item.rank >= 2;
    beep(urgent ? 3 : 1);
    if (urgent && notifyOn() && window.Notification && Notification.permission === "granted") {
      var n = new Notification("【" + (item.urgency || "紧急") + "】" + item.who + " 等待人工", { tag: "conv-" + item.id });
      n.onclick = function () { window.focus(); window.location = "/console/conversations/" + item.id; };
    }
    document.title = "(" + (urgent ? "紧急" : "新") + ") " + document.title.replace(/^\([^)]*\) /, "");
  }

  // --- the queue ------------------------------------------------------------------------------
  var canChat = !!document.querySelector('nav a[href="/console/"]');
  var known = null;
  var queueTimer = null;
  function refreshQueue() {
    if (!canChat) return;
    window.clearTimeout(queueTimer);
    queueTimer = window.setTimeout(function () {
      api("GET", "/console/api/queue").then(function (j) {
        if (!j.waiting) return;
        var badge = document.getElementById("waiting-count");
        if (badge) { badge.textContent = j.waiting.length; badge.hidden = j.waiting.length === 0; }
        var box = document.getElementById("queue");
        if (box) box.innerHTML = j.html;
        var ids = {};
        j.waiting.forEach(function (w) {
          ids[w.id] = true;
          if (known && !known[w.id]) alertNew(w);
        });
        known = ids;
      });
    }, 150);
  }
  refreshQueue();
  if (page === "queue") window.setInterval(refreshQueue, 30000); // waiting times keep counting

  // --- one conversation -----------------------------------------------------------------------
  var convId = body.dataset.conversation;
  var timeline = document.getElementById("timeline");
  var fetching = false, again = false;
  function scrollDown() { if (timeline) timeline.scrollTop = timeline.scrollHeight; }
  scrollDown();
  function fetchMessages() {
    if (!convId) return;
    if (fetching) { again = true; return; }
    fetching = true;
    api("GET", "/console/api/conversations/" + convId + "/messages?after=" + body.dataset.lastId).then(function (j) {
      fetching = false;
      if (j.html && timeline) {
        var tmp = document.createElement("div");
        tmp.innerHTML = j.html;
        Array.prototype.slice.call(tmp.children).forEach(function (el) {
          if (!el.dataset.message || !timeline.querySelector('[data-message="' + el.dataset.message + '"]')) timeline.appendChild(el);
        });
        scrollDown();
      }
      if (j.last_id) body.dataset.lastId = j.last_id;
      pollDeliveries();
      if (j.mode && j.mode !== body.dataset.mode) window.location.reload();
      if (again) { again = false; fetchMessages(); }
    }, function () { fetching = false; });
  }

  var replyForm = document.getElementById("reply-form");
  var replyText = document.getElementById("reply-text");
  function post(url, text, after) {
    return api("POST", url, { text: text }).then(function (j) {
      if (j._status >= 400) { showError(j.detail || "操作失败"); return; }
      if (after) after();
      fetchMessages();
    }, function () { showError("网络异常，请重试"); });
  }
  if (replyForm && replyText) {
    replyForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = replyText.value.trim();
      if (!text) return;
      var btn = document.getElementById("send-reply");
      btn.disabled = true;
      post(replyForm.getAttribute("action"), text, function () { replyText.value = ""; replyText.dispatchEvent(new Event("input")); })
        .then(function () { btn.disabled = false; replyText.focus(); });
    });
    replyText.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); replyForm.requestSubmit(); }
    });
    var canned = document.getElementById("canned");
    if (canned) canned.addEventListener("change", function () {
      if (canned.value) {
        replyText.value = replyText.value ? replyText.value + canned.value : canned.value;
        replyText.dispatchEvent(new Event("input"));
      }
      canned.value = ""; replyText.focus();
    });
    var asNote = document.getElementById("as-note");
    if (asNote) asNote.addEventListener("click", function () {
      var text = replyText.value.trim();
      if (!text) return;
      post("/console/conversations/" + convId + "/note", text, function () { replyText.value = ""; });
    });
  }
  // --- SMS compose box: characters, billed parts and cost as the owner will receive it -----------
  var smsMeter = document.getElementById("sms-meter");
  var smsCount = document.getElementById("sms-count");
  if (smsMeter && smsCount && replyText) {
    var smsTimer = null, smsSeq = 0;
    var smsOwnerText = document.getElementById("sms-owner-text");
    var sendBtn = document.getElementById("send-reply");
    var measure = function () {
      var seq = ++smsSeq;
      api("POST", smsMeter.dataset.preview, { text: replyText.value }).then(function (j) {
        if (seq !== smsSeq || j._status >= 400) return; // an older answer, or the page went away
        if (!j.ready) { smsCount.textContent = j.detail || ""; return; }
        smsCount.textContent = j.label + (j.detail ? " — " + j.detail : "");
        smsCount.classList.toggle("warn", !!j.detail);
        smsMeter.dataset.segments = j.segments;
        if (smsOwnerText) smsOwnerText.textContent = j.text;
        if (sendBtn) sendBtn.disabled = !j.ok && replyText.value.trim() !== "";
      });
    };
    replyText.addEventListener("input", function () {
      window.clearTimeout(smsTimer);
      smsTimer = window.setTimeout(measure, 150);
    });
    measure();
  }

  var noteForm = document.getElementById("note-form");
  if (noteForm) noteForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var ta = noteForm.querySelector("textarea");
    if (ta.value.trim()) post(noteForm.getAttribute("action"), ta.value.trim(), function () { ta.value = ""; });
  });

  // --- delivery badges: poll while a reply is still being sent ---------------------------------
  var deliveryTimer = null;
  function pollDeliveries() {
    if (!convId || !timeline) return;
    window.clearTimeout(deliveryTimer);
    var ids = Array.prototype.map.call(timeline.querySelectorAll(".delivery .pending"), function (el) {
      return el.parentNode.dataset.delivery;
    });
    if (!ids.length) return;
    deliveryTimer = window.setTimeout(function () {
      api("GET", "/console/api/conversations/" + convId + "/deliveries?ids=" + ids.join(",")).then(function (j) {
        Object.keys(j.badges || {}).forEach(function (id) {
          var el = timeline.querySelector('[data-delivery="' + id + '"]');
          if (el) el.innerHTML = j.badges[id];
        });
        if ((j.pending || []).length) pollDeliveries();
      });
    }, 1000);
  }
  pollDeliveries();

  // --- imports: progress until the report is there --------------------------------------------
  var importBox = document.getElementById("import-state");
  function pollImport() {
    if (!importBox || importBox.dataset.status !== "running") return;
    window.setTimeout(function () {
      api("GET", "/console/api/imports/" + importBox.dataset.job).then(function (j) {
        if (j.html) importBox.innerHTML = j.html;
        if (j.status) importBox.dataset.status = j.status;
        pollImport();
      });
    }, 500);
  }
  pollImport();

  // --- file pickers: say what was chosen (the native control's words are the browser's, not ours) -----
  document.querySelectorAll(".file-pick input[type=file]").forEach(function (input) {
    var count = input.closest("form").querySelector(".file-count");
    input.addEventListener("change", function () {
      if (!count) return;
      var n = input.files.length;
      count.textContent = n === 0 ? "未选择" : (n === 1 ? "已选择：" + input.files[0].name : "已选择 " + n + " 个文件");
    });
  });

  // --- the ticket form: categories per kind, owner autocomplete --------------------------------
  var kindSel = document.getElementById("kind");
  function filterByKind(select) {
    if (!select || !kindSel) return;
    var kind = kindSel.value, firstOk = null, keep = false;
    Array.prototype.forEach.call(select.options, function (o) {
      var ok = (o.dataset.kind || "").split(" ").indexOf(kind) >= 0;
      o.hidden = !ok; o.disabled = !ok;
      if (ok && !firstOk) firstOk = o;
      if (ok && o.selected) keep = true;
    });
    if (!keep && firstOk) firstOk.selected = true;
  }
  if (kindSel) {
    var cat = document.getElementById("category"), prio = document.getElementById("priority");
    filterByKind(cat); filterByKind(prio);
    kindSel.addEventListener("change", function () { filterByKind(cat); filterByKind(prio); });
  }
  var ownerQ = document.getElementById("owner-q");
  var suggest = document.getElementById("owner-suggest");
  var ownerId = document.getElementById("owner-id");
  var houseSel = document.getElementById("house-id");
  var phoneInput = document.getElementById("contact-phone");
  function pickOwner(o) {
    ownerId.value = o ? o.id : "";
    ownerQ.value = o ? o.name + " " + o.phone : "";
    suggest.hidden = true;
    while (houseSel.options.length > 1) houseSel.remove(1);
    (o ? o.houses : []).forEach(function (h) { houseSel.add(new Option(h.label, h.id)); });
    if (o && o.houses.length === 1) houseSel.selectedIndex = 1;
    if (o && phoneInput && !phoneInput.value) phoneInput.value = o.phone;
  }
  if (ownerQ && suggest) {
    var lookup = null;
    ownerQ.addEventListener("input", function () {
      window.clearTimeout(lookup);
      var q = ownerQ.value.trim();
      if (!q) { suggest.hidden = true; return; }
      lookup = window.setTimeout(function () {
        api("GET", "/console/api/owners?q=" + encodeURIComponent(q)).then(function (j) {
          suggest.innerHTML = "";
          (j.owners || []).forEach(function (o) {
            var li = document.createElement("li");
            li.textContent = o.name + " · " + o.phone + (o.houses.length ? " · " + o.houses.map(function (h) { return h.label; }).join("、") : "");
            li.dataset.owner = o.id;
            li.addEventListener("mousedown", function (e) { e.preventDefault(); pickOwner(o); });
            suggest.appendChild(li);
          });
          if (!(j.owners || []).length) {
            var none = document.createElement("li"); none.className = "muted"; none.textContent = "没有找到业主";
            suggest.appendChild(none);
          }
          suggest.hidden = false;
        });
      }, 200);
    });
    ownerQ.addEventListener("blur", function () { window.setTimeout(function () { suggest.hidden = true; }, 150); });
    var clear = document.getElementById("owner-clear");
    if (clear) clear.addEventListener("click", function () { pickOwner(null); });
  }

  // --- live events ----------------------------------------------------------------------------
  var dot = document.getElementById("live-dot");
  var ticketId = body.dataset.ticket;
  var reloadTimer = null;
  function editing() {
    var search = document.getElementById("global-search"); // a search being typed in the header counts too
    if (search && search.value !== search.defaultValue) return true;
    return Array.prototype.some.call(document.querySelectorAll("main input, main textarea, main select"), function (el) {
      if (el.type === "hidden" || el.id === "global-search") return false;
      if (el.type === "file") return el.files && el.files.length > 0;
      if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
      if (el.tagName === "SELECT") {
        var initial = 0; // the option the page came with: the one marked selected, else the first
        Array.prototype.forEach.call(el.options, function (o, i) { if (o.defaultSelected) initial = i; });
        return el.selectedIndex !== initial;
      }
      return el.value !== el.defaultValue;
    });
  }
  function softReload(delay) {
    window.clearTimeout(reloadTimer);
    reloadTimer = window.setTimeout(function () {
      if (editing()) return; // never throw away what someone is typing or the photos they picked
      window.location.reload();
    }, delay);
  }
  function connect() {
    if (!window.EventSource) return;
    var es = new EventSource("/console/events");
    es.addEventListener("hello", function () { if (dot) dot.classList.add("on"); refreshQueue(); fetchMessages(); });
    es.onerror = function () { if (dot) dot.classList.remove("on"); };
    es.addEventListener("expired", function () { es.close(); window.location = "/console/login"; });
    es.addEventListener("message.created", function (e) {
      var d = JSON.parse(e.data);
      if (convId && String(d.conversation_id) === convId) fetchMessages();
      if (page === "queue" && d.direction === "in") refreshQueue();
    });
    es.addEventListener("conversation.status_changed", function (e) {
      var d = JSON.parse(e.data);
      refreshQueue();
      if (convId && String(d.conversation_id) === convId && d.mode !== body.dataset.mode) fetchMessages();
      if (page === "dashboard") softReload(3000);
    });
    ["ticket.updated", "ticket.created"].forEach(function (name) {
      es.addEventListener(name, function (e) {
        var d = JSON.parse(e.data);
        if (ticketId && String(d.ticket_id) === ticketId) softReload(300);
        if (page === "dashboard" || page === "tickets") softReload(3000);
      });
    });
  }
  connect();

  // A campaign's progress page refreshes its counts every 2 s while it is sending (群发通知).
  var progressUrl = body.dataset.progress;
  function pollProgress() {
    api("GET", progressUrl).then(function (j) {
      if (!j || !j.counts) return;
      var c = j.counts;
      var shown = { total: c.total, queued: c.queued + c.sending, sent: c.reached,
                    delivered: c.delivered + c.acknowledged, acknowledged: c.acknowledged, failed: c.failed,
                    skipped: c.skipped };
      Object.keys(shown).forEach(function (k) {
        var el = document.querySelector('[data-count="' + k + '"]');
        if (el) el.textContent = shown[k];
      });
      var st = document.getElementById("campaign-status");
      if (st && j.status_text) st.textContent = j.status_text;
      if (j.live) window.setTimeout(pollProgress, 2000);
    });
  }
  if (progressUrl) window.setTimeout(pollProgress, 2000);

  // The campaign wizard shows only the chosen kind's fields (without script every field shows).
  var kindSelect = document.getElementById("wizard-kind");
  function showKind() {
    document.querySelectorAll(".kind-params").forEach(function (el) { el.hidden = el.dataset.kind !== kindSelect.value; });
  }
  if (kindSelect) { kindSelect.addEventListener("change", showKind); showKind(); }
})();
