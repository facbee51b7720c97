// The inbox's rows: an action refused (409, 422, 403, 404) answers the row with its message; htmx swaps
// error answers only when told to, so it is told here for those answers (marked X-Inbox-Row) alone.
document.addEventListener("htmx:beforeSwap", function (event) {
  var xhr = event.detail.xhr;
  if (xhr.status >= 400 && xhr.status < 500 && xhr.getResponseHeader("X-Inbox-Row") === "1") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
