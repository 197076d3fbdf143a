// The user's browser, for jwtagent's sign-in tests: opens URL, keeps the
// provider's cookies, follows redirects, fills in and submits the forms the
// test OpenID Provider shows (user code, login, consent), and follows the
// final redirect to wherever it goes (the agent's loopback listener).
//
//   node browser.mjs URL [--login NAME] [--user-code CODE] [--deny] [--forge-state]
//
// --deny aborts at the first form instead of going on; --forge-state first
// sends the final redirect with another `state`, then the real one.
// Prints one JSON line: {status, url, body, forged?: {status, body}} for the
// last page (the body as text, tags stripped). Trusts NODE_EXTRA_CA_CERTS.

const args = process.argv.slice(2);
const start = args[0];
const option = (name) => {
  const i = args.indexOf(name);
  return i > 0 ? args[i + 1] : undefined;
};
const flag = (name) => args.includes(name);
const login = option('--login') ?? 'alice';
const userCode = option('--user-code');
const deny = flag('--deny');
const forge = flag('--forge-state');

const provider = new URL(start).origin;
const jar = new Map();
const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
const text = (html) => html.replace(/<style[\s\S]*?<\/style>/g, '').replace(/<[^>]+>/g, ' ')
  .replace(/\s+/g, ' ').trim().slice(0, 2000);
const decode = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
  .replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const attr = (tag, name) => {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`));
  return m ? decode(m[1]) : undefined;
};

function parseForm(html) {
  const m = html.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/);
  if (!m) return undefined;
  const fields = {};
  for (const input of m[2].match(/<input\b[^>]*>/g) ?? []) {
    const name = attr(input, 'name');
    if (name) fields[name] = attr(input, 'value') ?? '';
  }
  return {
    id: attr(m[1], 'id'), action: attr(m[1], 'action'), method: attr(m[1], 'method') ?? 'get', fields,
  };
}

async function done(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

let url = start;
let method = 'GET';
let body;
for (let step = 0; step < 40; step += 1) {
  if (new URL(url).origin !== provider) {
    // The redirect back to the agent.
    let forged;
    if (forge) {
      const other = new URL(url);
      other.searchParams.set('state', 'forged-state');
      const r = await fetch(other);
      forged = { status: r.status, body: text(await r.text()) };
    }
    const r = await fetch(url);
    await done({ status: r.status, url, body: text(await r.text()), forged });
  }
  const headers = { cookie: cookie() };
  if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(url, {
    method, body, headers, redirect: 'manual',
  });
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const at = pair.indexOf('=');
    jar.set(pair.slice(0, at).trim(), pair.slice(at + 1));
  }
  if (res.status >= 300 && res.status < 400) {
    url = new URL(res.headers.get('location'), url).href;
    method = 'GET';
    body = undefined;
    continue;
  }
  const html = await res.text();
  const form = parseForm(html);
  if (!form) await done({ status: res.status, url, body: text(html) });
  const { fields } = form;
  if ('user_code' in fields && !fields.user_code) fields.user_code = userCode ?? '';
  if (deny) {
    const abort = html.match(/href="([^"]*\/abort)"/);
    if (fields.prompt && abort) {
      url = new URL(decode(abort[1]), url).href;
      method = 'GET';
      body = undefined;
      continue;
    }
    if (form.id === 'op.deviceConfirmForm') fields.abort = 'yes';
  }
  if (fields.prompt === 'login') {
    fields.login = login;
    fields.password = 'any';
  }
  url = new URL(form.action ?? url, url).href;
  method = form.method.toUpperCase();
  body = new URLSearchParams(fields).toString();
}
await done({ status: 0, url, body: 'too many steps' });
