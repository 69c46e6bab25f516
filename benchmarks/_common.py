r"""Shared helpers of the benchmark scripts: the real-data loaders (Baby
interactions with random features of the true shapes, TikTok), machine
facts, and the results writer."""
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get('PYG_BRMRS_RESULTS',
                              ROOT / 'benchmarks' / 'results'))


def data_dir() -> Path:
    env = os.environ.get('PYG_BRMRS_DATA')
    return Path(env) if env else ROOT.parent / 'shared' / 'data'


def skip(message: str) -> int:
    print(f'SKIP: {message}')
    return 0


def cpu_model() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def git_commit() -> Optional[str]:
    r"""The commit of the checkout these scripts run from (with ``+dirty``
    when its sources have uncommitted changes), :obj:`None` outside git."""
    import subprocess
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT,
                              capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'src',
                                'benchmarks/*.py'], cwd=ROOT,
                               capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ('+dirty' if dirty else '')


def machine_info(device: str = 'cpu',
                 threads: Optional[int] = None) -> Dict[str, object]:
    r"""Machine, versions and command of a benchmark run; ``threads`` is the
    torch thread count the measuring processes use when they are not this
    one (workers started with ``--threads``)."""
    import torch_geometric

    import pyg_brmrs
    info = {
        'date': datetime.datetime.now().astimezone().isoformat(
            timespec='seconds'),
        'command': ' '.join(shlex.quote(a) for a in [sys.executable] +
                            sys.argv),
        'cpu': cpu_model(),
        'cpu_count': os.cpu_count(),
        'torch_threads': (torch.get_num_threads() if threads is None
                          else threads),
        'load_average': os.getloadavg(),
        'torch': torch.__version__,
        'torch_geometric': torch_geometric.__version__,
        'pyg_brmrs': pyg_brmrs.__version__,
        'python': platform.python_version(),
        'device': device,
        'commit': git_commit(),
    }
    if device.startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
    return info


def load_baby(with_features: bool = True, seed: int = 0,
              dims: Tuple[int, int] = (4096, 384)):
    r"""Real Amazon Baby interactions (MMRec ids and split rule, from
    ``amazon-baby-jclaf/baby_jclaf_derived.tsv``) with random features of
    the true shapes (image 4096-d, text 384-d), or :obj:`None` when the data
    is absent."""
    path = data_dir() / 'amazon-baby-jclaf' / 'baby_jclaf_derived.tsv'
    return load_tsv(path, with_features, seed, dims)


def load_tsv(path: Path, with_features: bool = True, seed: int = 0,
             dims: Tuple[int, int] = (4096, 384)):
    import pandas as pd

    from pyg_brmrs.data import from_interactions
    if not path.is_file():
        return None
    df = pd.read_csv(path, sep='\t')
    num_items = int(df['itemID'].max()) + 1
    features = None
    if with_features:
        g = torch.Generator().manual_seed(seed)
        features = {
            'image': torch.rand(num_items, dims[0], generator=g).numpy(),
            'text': torch.randn(num_items, dims[1], generator=g).numpy(),
        }
    return from_interactions(df, features=features, split_col='x_label',
                             source=str(path))


def load_tiktok():
    from pyg_brmrs.data import read_diffmm
    path = data_dir() / 'tiktok-diffmm'
    if not path.is_dir():
        return None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # the cold-start drop
        return read_diffmm(path)


def median_time(fn: Callable[[], object], runs: int = 5,
                warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter
                ) -> Tuple[float, List[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times), times


def markdown_table(header: List[str], rows: List[List[object]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f'{v:.4g}' if abs(v) < 1000 else f'{v:.0f}'
        return str(v)

    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
    return '\n'.join(lines)


def write_results(name: str, payload: Dict[str, object], markdown: str,
                  out_dir: Optional[Path] = None) -> Path:
    out_dir = RESULTS if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f'{name}.json', 'w') as f:
        json.dump(payload, f, indent=1, default=str)
    info = payload.get('machine', {})
    header = (f"<!-- generated by {info.get('command', '')} -->\n"
              f"Machine: {info.get('cpu', '?')}, {info.get('cpu_count')} "
              f"CPUs, torch threads {info.get('torch_threads')}, device "
              f"{info.get('device')}{', ' + info['gpu'] if 'gpu' in info else ''}"
              f"; torch {info.get('torch')}; load average at start "
              f"{info.get('load_average')}; {info.get('date')}\n\n")
    (out_dir / f'{name}.md').write_text(header + markdown + '\n')
    return out_dir / f'{name}.md'


def report(name: str, results: List[Dict], markdown: str,
           threads: Optional[int] = None, **extra) -> int:
    r"""Writes ``results/<name>.json`` (machine info, :obj:`results` and
    :obj:`extra`) and ``.md`` (:obj:`markdown`), prints the table; returns
    0 (the exit status of a benchmark's ``main``)."""
    payload = dict(machine=machine_info(threads=threads), results=results,
                   **extra)
    path = write_results(name, payload, markdown)
    print(markdown)
    print('written', path)
    return 0


def run_worker(script: str, spec: Dict) -> Dict:
    r"""Runs ``python <script> --worker <spec as JSON>`` in a fresh process
    (its own peak RSS) and returns the dictionary it printed on its last
    ``RESULT {...}`` line, or ``{'error': ...}`` (with the worker's output
    on stderr) when it failed."""
    import subprocess
    proc = subprocess.run([sys.executable, script, '--worker',
                           json.dumps(spec)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        return dict(error=f'exit code {proc.returncode}')
    return json.loads(lines[-1][len('RESULT '):])
