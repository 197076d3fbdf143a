// Verifies a DPoP proof (RFC 9449 §4.3) made by jwtagent with an independent
// JOSE implementation (panva/jose): the signature against the embedded public
// JWK, the header, and htm, htu, iat, jti, ath and nonce.
//
//   echo '{"proof": ..., "method": ..., "url": ..., "access_token"?: ..., "nonce"?: ...}' \
//     | node verify-dpop.mjs
//
// Reads stdin (a token does not belong in argv). Prints {"jkt", "jti", "header",
// "payload"} as JSON; exits 1 with the problems found.

import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify } from 'jose';

const input = JSON.parse(readFileSync(0, 'utf8'));
const problems = [];
try {
  const { payload, protectedHeader } = await jwtVerify(input.proof, EmbeddedJWK, {
    typ: 'dpop+jwt',
    algorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA', 'Ed25519'],
  });
  const jwk = protectedHeader.jwk;
  for (const privateMember of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
    if (privateMember in jwk) problems.push(`the jwk header holds private member ${privateMember}`);
  }
  const expectedHtu = (() => {
    const u = new URL(input.url);
    u.search = '';
    u.hash = '';
    return u.href;
  })();
  if (payload.htm !== input.method) problems.push(`htm ${payload.htm}, not ${input.method}`);
  if (payload.htu !== expectedHtu) problems.push(`htu ${payload.htu}, not ${expectedHtu}`);
  if (typeof payload.iat !== 'number' || Math.abs(payload.iat - Date.now() / 1000) > 60) {
    problems.push(`iat ${payload.iat} is not now`);
  }
  if (typeof payload.jti !== 'string' || payload.jti.length < 16) {
    problems.push(`jti ${payload.jti} is not a random id`);
  }
  if (input.access_token !== undefined) {
    const ath = createHash('sha256').update(input.access_token).digest('base64url');
    if (payload.ath !== ath) problems.push(`ath ${payload.ath}, not ${ath}`);
  } else if ('ath' in payload) {
    problems.push('ath present without an access token');
  }
  if ((input.nonce ?? undefined) !== (payload.nonce ?? undefined)) {
    problems.push(`nonce ${payload.nonce}, not ${input.nonce}`);
  }
  if (problems.length === 0) {
    const jkt = await calculateJwkThumbprint(jwk, 'sha256');
    process.stdout.write(`${JSON.stringify({ jkt, jti: payload.jti, header: protectedHeader, payload })}\n`);
    process.exit(0);
  }
} catch (e) {
  problems.push(`${e.code ?? 'error'}: ${e.message}`);
}
process.stderr.write(`${problems.join('\n')}\n`);
process.exit(1);
