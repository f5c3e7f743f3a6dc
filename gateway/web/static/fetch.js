/* Talking to the box: JSON in, JSON out; a refusal is an Error carrying the HTTP status. */
"use strict";

async function fetchJSON(url, options) {
  const reply = await fetch(url, options);
  const body = await reply.json();
  if (!reply.ok) {
    const error = new Error(body.error || reply.statusText);
    error.status = reply.status;
    throw error;
  }
  return body;
}
