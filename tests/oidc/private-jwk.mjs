// Prints the private JWK (with `d`, and p, q, ... for RSA) of a PKCS#8 PEM key
// read from stdin, so a test can search outputs for the private key in JWK form
// too, not only as PEM.

import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';

const key = createPrivateKey(readFileSync(0, 'utf8'));
process.stdout.write(`${JSON.stringify(key.export({ format: 'jwk' }))}\n`);
