// A real OpenID Provider (panva/oidc-provider, a certified implementation) for
// jwtagent's conformance tests and the README demo.
//
//   node server.mjs CONFIG.json
//
// CONFIG.json: {"ttl": seconds, "port"?: number, "dpop_require_nonce"?: bool,
//               "tls"?: {"cert": PEM path, "key": PEM path},
//               "assertion_aud"?: "issuer" | "token_endpoint",
//               "mtls"?: {"ca": PEM path, "alias"?: bool},
//               "scopes"?: [more scope values],
//               "require_audience"?: bool, "require_x5t_s256"?: bool,
//               "google"?: {client_email, private_key_id, public_key_pem},
//               "ttls"?: {client_id: seconds},
//               "device_interval"?: seconds, "device_ttl"?: seconds,
//               "device_expires_in"?: seconds,
//               "slow_down_once"?: bool, "device_poll_error"?: error code,
//               "clients": [{client_id, auth, secret?, alg?, public_key_pem?, kid?,
//                            grant_types?, redirect_uris?, application_type?, scope?}]}
// With "tls" it serves HTTPS (the issuer is https://127.0.0.1:PORT), else HTTP.
// "assertion_aud" makes it accept only that client assertion `aud`, as some
// servers do (oidc-provider itself accepts the issuer and the endpoints).
// "mtls" turns on RFC 8705: the TLS server asks for client certificates
// (verified against "ca" for tls_client_auth, registered for
// self_signed_tls_client_auth) and access tokens are bound to them; with
// "alias" the metadata names /mtls/token as the mTLS token endpoint.
// Behaving as other servers do: "require_audience" refuses a token request
// without Auth0's `audience` parameter (as Auth0 does, 403 access_denied);
// "require_x5t_s256" refuses a client assertion whose header does not name
// the client's certificate (as Entra ID does).
// Grants beyond client_credentials, registered with oidc-provider's
// registerGrantType: RFC 7523 jwt-bearer (an assertion signed by the client's
// registered key, or an ID-JAG this server issued) and RFC 8693 token exchange
// (of this server's access tokens, for an access token or an ID-JAG,
// draft-ietf-oauth-identity-assertion-authz-grant). "google" adds
// /google/token, which checks a service-account assertion exactly as Google
// documents it. Clients:
// {auth: "tls_client_auth", subject_dn} or {auth:
// "self_signed_tls_client_auth", cert_pem}.
// Users sign in (device flow, RFC 8628; authorization code with PKCE) through
// oidc-provider's development interactions: a login form that takes any
// name, and a consent form. "device_interval" adds an `interval` to device
// authorization answers (oidc-provider sends none), "device_ttl" sets how
// long a device code lives, "slow_down_once" answers the first device
// poll with slow_down, and "device_poll_error" with that error. A native
// client's loopback redirect URI matches on any port (RFC 8252 §7.3).
// DPoP (RFC 9449) is on; with dpop_require_nonce every DPoP proof must carry a
// server nonce. Open dynamic registration (RFC 7591) at /reg takes the
// client_id the request names (else makes one up), so a test can register
// the JWKS that `jwtagent keygen` printed for the client id it gave;
// registrations are managed (RFC 7592: read, deleted) at /reg/ID.
// "registration": false turns it off; {"initial_token": T} asks for that
// initial access token; {"confidential": true} makes every registered client
// confidential (client_secret_basic with a secret) even when a public one is
// asked for, as some servers do; {"awkward_secret": true} makes its secret
// one that form-encoding changes (+, /, =, %).
// "basic_undecoded": client credentials in HTTP Basic are not form-decoded
// (RFC 6749 §2.3.1 says they must be), as some servers do: a secret that
// form-encoding changes does not match.
// Listens on a free loopback port, prints "READY <issuer>" on stdout, then one JSON
// line per token request: {"event":"token"|"error", client_id, auth_method,
// assertion?, error?, description?}. The assertion is logged only so that tests
// can verify it independently; it is single-use and this server is a test server.

import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { answerSyncs } from './sync.mjs';
import Provider, { errors } from 'oidc-provider';
import {
  importSPKI, exportJWK, calculateJwkThumbprint, jwtVerify, SignJWT, generateKeyPair,
  createLocalJWKSet, decodeProtectedHeader,
} from 'jose';

const config = JSON.parse(readFileSync(process.argv[2] ?? '/dev/stdin', 'utf8'));
const log = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function clientMetadata(c) {
  const meta = {
    client_id: c.client_id,
    token_endpoint_auth_method: c.auth,
    grant_types: c.grant_types ?? ['client_credentials'],
    response_types: (c.grant_types ?? []).includes('authorization_code') ? ['code'] : [],
    redirect_uris: c.redirect_uris ?? [],
    ...(c.application_type ? { application_type: c.application_type } : {}),
    scope: c.scope ?? 'api:read api:write',
  };
  if (c.secret !== undefined) meta.client_secret = c.secret;
  if (c.auth.endsWith('tls_client_auth')) meta.tls_client_certificate_bound_access_tokens = true;
  if (c.subject_dn) meta.tls_client_auth_subject_dn = c.subject_dn;
  if (c.cert_pem) {
    const cert = new X509Certificate(c.cert_pem);
    const jwk = cert.publicKey.export({ format: 'jwk' });
    meta.jwks = { keys: [{ ...jwk, x5c: [cert.raw.toString('base64')] }] };
  }
  if (c.alg && c.auth.endsWith('_jwt')) meta.token_endpoint_auth_signing_alg = c.alg;
  if (c.public_key_pem) {
    const key = await importSPKI(c.public_key_pem, c.alg, { extractable: true });
    const jwk = await exportJWK(key);
    // Registered as `jwtagent jwks` prints it: with its RFC 7638 thumbprint
    // as kid, unless the client names another ("kid") or none ("kid": null).
    const kid = c.kid === undefined ? await calculateJwkThumbprint(jwk) : c.kid;
    meta.jwks = { keys: [{ ...jwk, alg: c.alg, use: 'sig', ...(kid ? { kid } : {}) }] };
  }
  return meta;
}

const mtls = config.mtls
  ? { requestCert: true, rejectUnauthorized: false, ca: readFileSync(config.mtls.ca) }
  : {};
const server = config.tls
  ? createHttpsServer({
    cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), ...mtls,
  })
  : createHttpServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const issuer = `${config.tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: await Promise.all(config.clients.map(clientMetadata)),
  ...(config.mtls?.alias
    ? { discovery: { mtls_endpoint_aliases: { token_endpoint: `${issuer}/mtls/token` } } }
    : {}),
  clientAuthMethods: [
    ...(config.mtls ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
    'client_secret_basic',
    'client_secret_post',
    'client_secret_jwt',
    'private_key_jwt',
    'none',
  ],
  enabledJWA: {
    clientAuthSigningAlgValues: [
      'HS256', 'HS384', 'HS512',
      'RS256', 'RS384', 'RS512',
      'PS256', 'PS384', 'PS512',
      'ES256', 'ES384', 'Ed25519', 'EdDSA',
    ],
    dPoPSigningAlgValues: ['ES256', 'ES384', 'RS256', 'PS256', 'Ed25519', 'EdDSA'],
  },
  scopes: ['api:read', 'api:write', ...(config.scopes ?? [])],
  async assertJwtClientAuthClaimsAndHeader(ctx, claims, header) {
    if (config.require_x5t_s256 && !header['x5t#S256']) {
      throw new errors.InvalidClientAuth('the assertion header names no certificate (x5t#S256)');
    }
    const wanted = {
      issuer: ctx.oidc.issuer,
      token_endpoint: ctx.oidc.urlFor('token'),
    }[config.assertion_aud];
    if (wanted && claims.aud !== wanted) {
      throw new errors.InvalidClientAuth(`aud must be ${wanted}`);
    }
  },
  // "ttls": {client_id: seconds} overrides "ttl" for some clients.
  ttl: {
    ClientCredentials: (ctx, token, client) => config.ttls?.[client.clientId] ?? config.ttl ?? 600,
    AccessToken: () => config.ttl ?? 600,
    DeviceCode: () => config.device_ttl ?? 600,
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    mTLS: {
      enabled: Boolean(config.mtls),
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => ctx.socket.getPeerX509Certificate?.() ?? undefined,
      certificateAuthorized: (ctx) => ctx.socket.authorized,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
        && ctx.socket.getPeerX509Certificate()?.subject === expected,
    },
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => Boolean(config.dpop_require_nonce),
    },
    registration: {
      enabled: config.registration !== false,
      idFactory: (ctx) => ctx.oidc.body.client_id ?? `reg-${randomBytes(9).toString('base64url')}`,
      initialAccessToken: config.registration?.initial_token ?? false,
      secretFactory: () => (config.registration?.awkward_secret
        ? `${randomBytes(24).toString('base64')}+/=%`
        : randomBytes(32).toString('base64url')),
    },
    registrationManagement: { enabled: config.registration !== false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => ({
        scope: 'api:read api:write',
        audience: resourceIndicator,
        accessTokenTTL: config.ttl ?? 600,
        accessTokenFormat: 'jwt',
      }),
    },
  },
});

provider.on('grant.success', (ctx) => {
  log({
    event: 'token',
    client_id: ctx.oidc.client?.clientId,
    auth_method: ctx.oidc.client?.clientAuthMethod,
    assertion: ctx.oidc.body?.client_assertion,
    resource: ctx.oidc.body?.resource,
    token_type: ctx.body?.token_type,
    dpop: Boolean(ctx.get('DPoP')),
    via_mtls_alias: Boolean(ctx.req.viaMtlsAlias),
    audience: ctx.oidc.body?.audience,
    scope: ctx.oidc.body?.scope,
    // The request's other parameters, as the server saw them (no secrets).
    params: Object.fromEntries(Object.entries(ctx.oidc.body ?? {}).filter(([k]) => ![
      'client_assertion', 'client_secret', 'refresh_token', 'assertion', 'subject_token', 'actor_token',
      'code', 'code_verifier', 'device_code',
    ].includes(k))),
    grant_type: ctx.oidc.body?.grant_type,
    at: Date.now(),
  });
});
// Grants beyond client_credentials.
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_JAG_TYP = 'oauth-id-jag+jwt';
// What this server signs ID-JAGs with, in its identity provider role.
const idJagKey = await generateKeyPair('ES256');

// invalid_grant with the reason in error_description, as servers often say.
const invalidGrant = (why) => Object.assign(new errors.InvalidGrant(why), { error_description: why });

async function accessToken(ctx, scope) {
  const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope: scope || undefined });
  const value = await token.save();
  return {
    access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: token.scope,
  };
}

// "grants": false leaves them out, as a server that knows none of them.
if (config.grants !== false) {
provider.registerGrantType(JWT_BEARER, async (ctx) => {
  const { assertion, scope } = ctx.oidc.params;
  const { client } = ctx.oidc;
  let header;
  let payload;
  try {
    header = decodeProtectedHeader(assertion);
    if (header.typ === ID_JAG_TYP) {
      ({ payload } = await jwtVerify(assertion, idJagKey.publicKey, {
        issuer, audience: issuer, typ: ID_JAG_TYP,
      }));
      if (payload.client_id !== client.clientId) throw new Error(`the ID-JAG is for client ${payload.client_id}`);
    } else {
      ({ payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks ?? { keys: [] }), {
        issuer: client.clientId,
        audience: [issuer, ctx.oidc.urlFor('token')],
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      }));
    }
  } catch (e) {
    throw invalidGrant(`the assertion was refused: ${e.message}`);
  }
  log({
    event: 'jwt-bearer', client_id: client.clientId, typ: header.typ, kid: header.kid,
    sub: payload.sub, aud: payload.aud, assertion,
  });
  ctx.body = await accessToken(ctx, scope);
}, ['assertion', 'scope']);

provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const p = ctx.oidc.params;
  const { client } = ctx.oidc;
  if (p.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`unsupported subject_token_type ${p.subject_token_type}`);
  }
  const find = async (value, what) => {
    const token = await provider.ClientCredentials.find(value);
    if (!token || token.isExpired) throw invalidGrant(`the ${what} is invalid or expired`);
    return token;
  };
  const subject = await find(p.subject_token, 'subject_token');
  const actor = p.actor_token ? await find(p.actor_token, 'actor_token') : undefined;
  log({
    event: 'token-exchange', client_id: client.clientId, subject: subject.clientId,
    actor: actor?.clientId, actor_token_type: p.actor_token_type,
    requested: p.requested_token_type, audience: p.audience,
  });
  if (p.requested_token_type === ID_JAG) {
    const ttl = 300;
    const jag = await new SignJWT({ client_id: client.clientId, scope: p.scope })
      .setProtectedHeader({ alg: 'ES256', typ: ID_JAG_TYP })
      .setIssuer(issuer).setSubject(subject.clientId).setAudience(p.audience ?? issuer)
      .setJti(randomBytes(16).toString('hex')).setIssuedAt().setExpirationTime(`${ttl}s`)
      .sign(idJagKey.privateKey);
    ctx.body = {
      access_token: jag, issued_token_type: ID_JAG, token_type: 'N_A', expires_in: ttl,
    };
    return;
  }
  ctx.body = { ...await accessToken(ctx, p.scope), issued_token_type: ACCESS_TOKEN_TYPE };
}, [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
  'requested_token_type', 'audience', 'resource', 'scope',
]);
}

// Google's token endpoint for service accounts, as Google documents it: the
// form holds grant_type and assertion only; the assertion is RS256 with the
// key's id as kid, iss the account's email, a scope claim, aud this
// endpoint, and lives at most an hour.
async function googleToken(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const form = new URLSearchParams(Buffer.concat(chunks).toString());
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const fail = (error, description) => {
    log({ event: 'error', google: true, error, description });
    answer(400, { error, error_description: description });
  };
  const fields = [...form.keys()].sort().join(',');
  if (fields !== 'assertion,grant_type') {
    return fail('invalid_request', `the form must hold grant_type and assertion only, not ${fields}`);
  }
  if (form.get('grant_type') !== JWT_BEARER) {
    return fail('unsupported_grant_type', `Invalid grant_type: ${form.get('grant_type')}`);
  }
  const sa = config.google;
  const assertion = form.get('assertion');
  let header;
  let payload;
  try {
    header = decodeProtectedHeader(assertion);
    const key = await importSPKI(sa.public_key_pem, 'RS256');
    ({ payload } = await jwtVerify(assertion, key, {
      algorithms: ['RS256'], issuer: sa.client_email, audience: `${issuer}/google/token`,
    }));
  } catch (e) {
    return fail('invalid_grant', `Invalid JWT Signature. (${e.message})`);
  }
  if (header.kid !== sa.private_key_id) return fail('invalid_grant', 'Invalid JWT Signature. (kid)');
  if (typeof payload.scope !== 'string' || !payload.scope) {
    return fail('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
  }
  if (!(payload.exp > payload.iat && payload.exp - payload.iat <= 3600)) {
    return fail('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes)');
  }
  log({
    event: 'google', sub: payload.sub, scope: payload.scope, kid: header.kid, alg: header.alg,
  });
  return answer(200, {
    access_token: `ya29.${randomBytes(24).toString('base64url')}`,
    expires_in: 3599,
    token_type: 'Bearer',
  });
}

// Device flow quirk: oidc-provider sends no `interval`; "device_interval" adds one.
// "device_expires_in": the device authorization answer says its code lives
// this long, whatever "device_ttl" makes it live (a server that ends a code
// early answers the next poll with expired_token).
// "refresh_expires_in": a token answer with a refresh token says how long it
// lasts, as Keycloak does.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && config.device_interval) {
    ctx.body = { ...ctx.body, interval: config.device_interval };
  }
  if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && config.device_expires_in) {
    ctx.body = { ...ctx.body, expires_in: config.device_expires_in };
  }
  if (ctx.oidc?.route === 'token' && ctx.status === 200 && config.refresh_expires_in
      && ctx.body?.refresh_token) {
    ctx.body = { ...ctx.body, refresh_expires_in: config.refresh_expires_in };
  }
});

// The first device poll is refused with `error`: slow_down ("slow_down_once",
// RFC 8628 §3.5) or any other ("device_poll_error").
let firstPollRefused = false;
async function refuseFirstPoll(req, res, error) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  req.body = Buffer.concat(chunks).toString();
  const grant = new URLSearchParams(req.body).get('grant_type');
  if (firstPollRefused || grant !== 'urn:ietf:params:oauth:grant-type:device_code') return false;
  firstPollRefused = true;
  log({ event: 'error', error, grant_type: grant, at: Date.now() });
  res.writeHead(400, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error, error_description: `the test provider refuses this poll (${error})` }));
  return true;
}

provider.on('grant.error', (ctx, error) => {
  log({
    event: 'error',
    grant_type: ctx.oidc.body?.grant_type,
    at: Date.now(),
    client_id: ctx.oidc.client?.clientId ?? ctx.oidc.body?.client_id,
    error: error.error,
    assertion: ctx.oidc.body?.client_assertion,
    // The real reason, which the response hides behind "client authentication failed".
    description: error.error_detail ?? error.error_description,
  });
});

const callback = provider.callback();

// Auth0: a client_credentials request must name the API (`audience`).
async function auth0Refuses(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  req.body = Buffer.concat(chunks).toString();
  if (new URLSearchParams(req.body).get('audience')) return false;
  log({ event: 'error', error: 'access_denied', description: 'no audience' });
  res.writeHead(403, { 'content-type': 'application/json' });
  res.end(JSON.stringify({
    error: 'access_denied',
    error_description: 'No audience parameter was provided, and no default audience has been configured',
  }));
  return true;
}

// "registration": {"confidential": true}: a public client asked for is made
// confidential.
async function confidentialOnly(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
  if (!body.token_endpoint_auth_method || body.token_endpoint_auth_method === 'none') {
    body.token_endpoint_auth_method = 'client_secret_basic';
  }
  req.body = body;
}

// "basic_undecoded": the server reads Basic credentials as they come, without
// form-decoding them; rewritten so that oidc-provider (which decodes them)
// sees what such a server would compare.
function undecodeBasic(req) {
  const header = req.headers.authorization;
  if (!header?.startsWith('Basic ')) return;
  const decoded = Buffer.from(header.slice(6), 'base64').toString();
  const colon = decoded.indexOf(':');
  const [id, secret] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
  const encode = (s) => encodeURIComponent(s);
  req.headers.authorization = `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`;
  if (encode(secret) !== secret) log({ event: 'basic_undecoded', client_id: id });
}

server.on('request', async (req, res) => {
  if (config.registration?.confidential && req.method === 'POST' && req.url === '/reg') {
    await confidentialOnly(req);
  }
  if (config.basic_undecoded) undecodeBasic(req);
  // "rfc8414_only": no OpenID configuration, RFC 8414 metadata only.
  if (config.rfc8414_only && req.url === '/.well-known/openid-configuration') {
    res.writeHead(404).end();
    return;
  }
  if (config.rfc8414_only && req.url === '/.well-known/oauth-authorization-server') {
    req.url = '/.well-known/openid-configuration';
    log({ event: 'rfc8414' });
  }
  if (req.url.startsWith('/mtls/')) {
    req.url = req.url.slice('/mtls'.length);
    req.viaMtlsAlias = true;
  }
  if (config.require_audience && req.method === 'POST' && req.url === '/token'
    && await auth0Refuses(req, res)) {
    return;
  }
  const refusal = config.slow_down_once ? 'slow_down' : config.device_poll_error;
  if (refusal && req.method === 'POST' && req.url === '/token'
    && await refuseFirstPoll(req, res, refusal)) {
    return;
  }
  if (config.google && req.method === 'POST' && req.url === '/google/token') {
    await googleToken(req, res);
    return;
  }
  callback(req, res);
});
process.stdout.write(`READY ${issuer}\n`);

answerSyncs(log);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
