// Registers a client with the test provider (RFC 7591 dynamic registration),
// as a user would register the JWKS `jwtagent keygen` printed.
//
//   node register.mjs ISSUER < METADATA.json
//
// Prints the provider's answer; exits 1 unless it is 201 Created.

import { readFileSync } from 'node:fs';

const [issuer] = process.argv.slice(2);
const response = await fetch(`${issuer}/reg`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: readFileSync(0, 'utf8'),
});
const text = await response.text();
process.stdout.write(`${text}\n`);
process.exit(response.status === 201 ? 0 : 1);
