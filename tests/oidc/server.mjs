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
//               "clients": [{client_id, auth, secret?, alg?, public_key_pem?, kid?}]}
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
// the client's certificate (as Entra ID does). Clients:
// {auth: "tls_client_auth", subject_dn} or {auth:
// "self_signed_tls_client_auth", cert_pem}.
// DPoP (RFC 9449) is on; with dpop_require_nonce every DPoP proof must carry a
// server nonce. Open dynamic registration (RFC 7591) at /reg takes the
// client_id the request names, so a test can register the JWKS that
// `jwtagent keygen` printed for the client id it gave.
// Listens on a free loopback port, prints "READY <issuer>" on stdout, then one JSON
// line per token request: {"event":"token"|"error", client_id, auth_method,
// assertion?, error?, description?}. The assertion is logged only so that tests
// can verify it independently; it is single-use and this server is a test server.

import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';
import { importSPKI, exportJWK, calculateJwkThumbprint } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2] ?? '/dev/stdin', 'utf8'));
const log = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function clientMetadata(c) {
  const meta = {
    client_id: c.client_id,
    token_endpoint_auth_method: c.auth,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
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
  if (c.alg) meta.token_endpoint_auth_signing_alg = c.alg;
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
  ttl: { ClientCredentials: config.ttl ?? 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
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
      enabled: true,
      idFactory: (ctx) => ctx.oidc.body.client_id,
    },
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
  });
});
provider.on('grant.error', (ctx, error) => {
  log({
    event: 'error',
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

server.on('request', async (req, res) => {
  if (req.url.startsWith('/mtls/')) {
    req.url = req.url.slice('/mtls'.length);
    req.viaMtlsAlias = true;
  }
  if (config.require_audience && req.method === 'POST' && req.url === '/token'
    && await auth0Refuses(req, res)) {
    return;
  }
  callback(req, res);
});
process.stdout.write(`READY ${issuer}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
