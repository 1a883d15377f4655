/* Gap detection for one conversation's messages, shared by the widget and the inbox.
 *
 * The server numbers a conversation's messages 1, 2, 3 … without gaps (seq). A client holds a
 * gap-free run up to gapFree() and maybe some later messages. A message arriving with
 * seq > gapFree + 1, or the server's conversation_head with last_seq > gapFree (sent after a
 * fan-out outage), means something was not delivered live: the tracker fetches what follows
 * gapFree and hands it to the page, until the run reaches the highest seq known to exist.
 * A client rejoins with last_seq = gapFree(), never the highest seq it saw, so the server's
 * replay covers every hole. An ES module exporting ChatSeqGaps.
 *
 *   const gaps = new ChatSeqGaps({
 *     fetchAfter: function (seq) { return Promise of the messages after seq, in seq order },
 *     deliver: function (message) { put it in the page; the page calls gaps.held(seq) }
 *   });
 */
// Live messages from two server processes may arrive slightly out of seq order: a hole is
// given this long to fill by itself before it is fetched.
var SETTLE_MS = 400;
// A head is announced to every socket of a process at once: the clients that lack
// something spread their fetches over this long instead of arriving together.
var HEAD_SPREAD_MS = 1000;
var RETRY_MS = [1000, 2000, 4000, 8000, 15000];

function isSeq(n) {
  return typeof n === "number" && isFinite(n) && n >= 0 && Math.floor(n) === n;
}

export function ChatSeqGaps(opts) {
  this._fetchAfter = opts.fetchAfter;
  this._deliver = opts.deliver;
  this._epoch = 0;
  this._timer = null;
  this.reset(0);
}

/* Start over (another conversation, or history just loaded): `base` is the seq below the
 * first message held; 0 when the client holds the conversation from its start. */
ChatSeqGaps.prototype.reset = function (base) {
  this._epoch++;
  this._gapFree = isSeq(base) ? base : 0;
  this._above = {}; // seqs held above gapFree
  this._known = this._gapFree; // the highest seq known to exist
  this._fetching = false;
  this._failures = 0;
  if (this._timer) clearTimeout(this._timer);
  this._timer = null;
};

ChatSeqGaps.prototype.gapFree = function () {
  return this._gapFree;
};

ChatSeqGaps.prototype.missing = function () {
  return this._known > this._gapFree;
};

/* The page now shows the message with this seq. */
ChatSeqGaps.prototype.held = function (seq) {
  if (!isSeq(seq)) return;
  this._mark(seq);
  this._schedule(SETTLE_MS);
};

/* The server says the conversation's messages go up to lastSeq. */
ChatSeqGaps.prototype.head = function (lastSeq) {
  if (!isSeq(lastSeq)) return;
  if (lastSeq > this._known) this._known = lastSeq;
  this._failures = 0;
  this._schedule(Math.floor(Math.random() * HEAD_SPREAD_MS));
};

ChatSeqGaps.prototype._mark = function (seq) {
  if (seq > this._known) this._known = seq;
  if (seq <= this._gapFree) return;
  this._above[seq] = true;
  while (this._above[this._gapFree + 1]) {
    delete this._above[this._gapFree + 1];
    this._gapFree++;
  }
};

ChatSeqGaps.prototype._schedule = function (delay) {
  if (!this.missing() || this._fetching) return;
  if (this._timer) {
    if (delay >= this._due - Date.now()) return; // already due by then
    clearTimeout(this._timer);
  }
  this._due = Date.now() + delay;
  var self = this;
  this._timer = setTimeout(function () {
    self._timer = null;
    self._fill();
  }, delay);
};

ChatSeqGaps.prototype._fill = function () {
  if (!this.missing() || this._fetching) return;
  var self = this,
    epoch = this._epoch,
    from = this._gapFree;
  this._fetching = true;
  Promise.resolve()
    .then(function () {
      return self._fetchAfter(from);
    })
    .then(
      function (list) {
        if (epoch !== self._epoch) return;
        self._fetching = false;
        (list || []).forEach(function (m) {
          if (!m || !isSeq(m.seq) || m.seq <= from) return;
          self._deliver(m);
          self._mark(m.seq);
        });
        if (self._gapFree > from) {
          self._failures = 0;
          self._schedule(0); // a page at a time, until nothing is missing
        } else {
          self._retry();
        }
      },
      function () {
        if (epoch !== self._epoch) return;
        self._fetching = false;
        self._retry();
      },
    );
};

// A failed fetch (network, server busy) or one that brought nothing tries again later; a
// new message or head starts a new round.
ChatSeqGaps.prototype._retry = function () {
  if (!this.missing() || this._failures >= RETRY_MS.length) return;
  this._schedule(RETRY_MS[this._failures++]);
};
