// Fails when the committed client in src/gen is not what `npm run gen` would produce
// from ../proto today, so a contract change cannot land without its regenerated client.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const committedDir = 'src/gen';
const scratch = mkdtempSync(join(tmpdir(), 'presence-gen-'));

try {
  const buf = spawnSync('buf', ['generate', '--output', scratch], { stdio: 'inherit' });
  if (buf.error) throw buf.error;
  if (buf.status !== 0) throw new Error(`buf generate exited with status ${buf.status}`);

  const differences = compareTrees(committedDir, join(scratch, committedDir));
  if (differences.length > 0) {
    console.error('src/gen is stale; run `npm run gen` and commit the result:');
    for (const line of differences) console.error(`  ${line}`);
    process.exitCode = 1;
  } else {
    console.log('src/gen is up to date.');
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

/** Lists files that are missing, extra or different between two directory trees. */
function compareTrees(expectedRoot, actualRoot) {
  const expected = listFiles(expectedRoot);
  const actual = listFiles(actualRoot);
  const differences = [];
  for (const file of new Set([...expected, ...actual])) {
    if (!actual.has(file)) differences.push(`${file}: committed but no longer generated`);
    else if (!expected.has(file)) differences.push(`${file}: generated but not committed`);
    else if (!readFileSync(join(expectedRoot, file)).equals(readFileSync(join(actualRoot, file)))) {
      differences.push(`${file}: differs`);
    }
  }
  return differences;
}

function listFiles(root) {
  const entries = readdirSync(root, { recursive: true, withFileTypes: true });
  return new Set(
    entries.filter((entry) => entry.isFile()).map((entry) => relative(root, join(entry.parentPath, entry.name))),
  );
}
