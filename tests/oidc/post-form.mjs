// POSTs a form, as a client of the test OpenID Provider would, and prints
// {status, body}: for tests that check what the server thinks of a token
// (a refresh token that should be refused, a revoked one).
//
//   node post-form.mjs URL key=value...
// Trusts NODE_EXTRA_CA_CERTS.

const [url, ...pairs] = process.argv.slice(2);
const form = new URLSearchParams(pairs.map((p) => {
  const at = p.indexOf('=');
  return [p.slice(0, at), p.slice(at + 1)];
}));
const res = await fetch(url, {
  method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' },
});
const text = await res.text();
let body;
try { body = JSON.parse(text); } catch { body = text; }
process.stdout.write(`${JSON.stringify({ status: res.status, body })}\n`);
