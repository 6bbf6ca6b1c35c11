// framelog's ABR settings and the Python reference cases, read through Python from
// framelog.yaml (processors/abr.py), so the JavaScript tests repeat no threshold.
// FRAMELOG_PYTHON picks the interpreter (default: the repository's .venv, else python3).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let cached = null;

/** {settings, cases}: js_constants and reference_cases of config.abr and config.hls.quality_levels. */
export function reference() {
  if (cached) return cached;
  const venv = path.join(ROOT, '.venv', 'bin', 'python');
  const python = process.env.FRAMELOG_PYTHON || (existsSync(venv) ? venv : 'python3');
  const code = [
    'import json',
    'from framelog.core.config import get_config',
    'from framelog.processors.abr import js_constants, reference_cases',
    'c = get_config()',
    'abr, levels = c.abr, c.hls.quality_levels',
    'print(json.dumps({"settings": js_constants(abr, levels), "cases": reference_cases(abr, levels)}))',
  ].join('\n');
  cached = JSON.parse(execFileSync(python, ['-c', code], { cwd: ROOT, encoding: 'utf8' }));
  return cached;
}
