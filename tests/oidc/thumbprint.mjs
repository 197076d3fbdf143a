// Prints the RFC 7638 thumbprint (SHA-256, base64url) of the JWK on stdin, as
// panva/jose computes it.

import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint } from 'jose';

process.stdout.write(await calculateJwkThumbprint(JSON.parse(readFileSync(0, 'utf8')), 'sha256'));
