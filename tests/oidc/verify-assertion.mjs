// Verifies a client assertion made by jwtagent with an independent JOSE
// implementation (panva/jose): signature, header and every RFC 7523 claim.
//
//   node verify-assertion.mjs ASSERTION KEY ALG ISS AUD
//
// KEY is an SPKI PEM file (asymmetric algorithms) or a file holding the shared
// secret (HS*). Prints the verified header and claims as JSON; exits 1 on failure.

import { readFileSync } from 'node:fs';
import { importSPKI, jwtVerify } from 'jose';

const [assertion, keyFile, alg, iss, aud] = process.argv.slice(2);
const keyBytes = readFileSync(keyFile);
const key = alg.startsWith('HS')
  ? new Uint8Array(keyBytes)
  : await importSPKI(keyBytes.toString('utf8'), alg);

try {
  const { payload, protectedHeader } = await jwtVerify(assertion, key, {
    algorithms: [alg],
    issuer: iss,
    subject: iss,
    audience: aud,
    typ: 'JWT',
    requiredClaims: ['iss', 'sub', 'aud', 'jti', 'iat', 'exp'],
  });
  const problems = [];
  if (payload.exp - payload.iat !== 60) problems.push(`exp - iat is ${payload.exp - payload.iat}, not 60`);
  if (!/^[0-9a-f]{32}$/.test(payload.jti)) problems.push(`jti ${payload.jti} is not 128 random bits in hex`);
  if (Math.abs(payload.iat - Date.now() / 1000) > 120) problems.push('iat is not now');
  if (problems.length) throw new Error(problems.join('; '));
  process.stdout.write(`${JSON.stringify({ header: protectedHeader, claims: payload })}\n`);
} catch (error) {
  process.stderr.write(`assertion rejected: ${error.message}\n`);
  process.exit(1);
}
