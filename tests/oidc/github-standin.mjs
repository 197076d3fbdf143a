// A STAND-IN FOR GITHUB, not GitHub: GitHub cannot run here. It implements
// the one endpoint jwtagent uses, as GitHub documents it
// (https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app):
//
//   POST /app/installations/{installation_id}/access_tokens
//   Authorization: Bearer <app JWT>   Accept: application/vnd.github+json
//   X-GitHub-Api-Version: 2022-11-28  body: {repositories?, permissions?}
//
// It verifies the app JWT's RS256 signature with the app's public key, its
// `iss` (the app id), and its `iat`/`exp` window (exp after now, at most ten
// minutes after iat, iat not in the future beyond a minute of drift), and
// answers 201 {token, expires_at (RFC 3339), permissions,
// repository_selection}, or GitHub's error shape {message,
// documentation_url}.
//
//   node github-standin.mjs CONFIG.json
//
// CONFIG.json: {"app_id": number, "installations": [ids], "public_key_pem",
//               "ttl"?: seconds, "tls": {"cert", "key"}}
// Prints "READY <url>" on stdout, then one JSON line per request.

import { createServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { answerSyncs } from './sync.mjs';
import { importSPKI, jwtVerify } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const log = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const key = await importSPKI(config.public_key_pem, 'RS256');
const DOCS = 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app';

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

async function handle(req, res) {
  const fail = (status, message) => {
    log({ event: 'error', status, message });
    answer(res, status, { message, documentation_url: DOCS, status: String(status) });
  };
  const match = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(req.url);
  if (req.method !== 'POST' || !match) return fail(404, 'Not Found');
  if (req.headers['x-github-api-version'] !== '2022-11-28'
    || req.headers.accept !== 'application/vnd.github+json') {
    return fail(400, 'missing or wrong Accept / X-GitHub-Api-Version header');
  }
  const jwt = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  let payload;
  try {
    ({ payload } = await jwtVerify(jwt, key, { algorithms: ['RS256'], clockTolerance: 60 }));
  } catch (e) {
    return fail(401, `A JSON web token could not be decoded (${e.code ?? e.message})`);
  }
  const now = Math.floor(Date.now() / 1000);
  if (String(payload.iss) !== String(config.app_id)) {
    return fail(401, `'Issuer' claim ('iss') must be the app's id (got ${payload.iss})`);
  }
  if (!(payload.iat <= now + 60 && payload.exp > now && payload.exp - payload.iat <= 600)) {
    return fail(401, "'Expiration time' claim ('exp') is too far in the future");
  }
  const installation = Number(match[1]);
  if (!config.installations.includes(installation)) return fail(404, 'Not Found');
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
  const ttl = config.ttl ?? 3600;
  const token = `ghs_${randomBytes(18).toString('base64url')}`;
  log({
    event: 'token', installation, iss: payload.iss, iat: payload.iat, exp: payload.exp,
    repositories: body.repositories, permissions: body.permissions, token,
  });
  return answer(res, 201, {
    token,
    expires_at: new Date((now + ttl) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    permissions: body.permissions ?? { contents: 'read', metadata: 'read' },
    repository_selection: body.repositories ? 'selected' : 'all',
  });
}

const server = createServer({
  cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key),
}, (req, res) => { handle(req, res).catch((e) => answer(res, 500, { message: e.message })); });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
process.stdout.write(`READY https://127.0.0.1:${server.address().port}\n`);
answerSyncs(log);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
