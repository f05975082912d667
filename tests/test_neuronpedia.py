"""build_interface.py --neuronpedia=True: the site's data in Neuronpedia's upload format, checked field by field
against Neuronpedia's schema (its converter's db_models) and value by value against the site's own data."""
import glob
import gzip
import json
import os
import re
import shutil
from datetime import datetime

import pytest

from monosemanticity import feature_stats as fs
from monosemanticity import logit_effects as le
from monosemanticity import site as site_build
from monosemanticity import neuronpedia as npx
import test_interface as ti
from conftest import run_script

# Neuronpedia's rows: field -> type, as declared in hijohnnylin/neuronpedia
# utils/neuronpedia-utils/neuronpedia_utils/db_models/*.py (Optional[X] -> (X, None); datetime -> ISO str).
OPT_STR, OPT_INT, OPT_FLOAT = (str, type(None)), (int, type(None)), (int, float, type(None))
FLOAT, LIST = (int, float), list
SCHEMA = {
    'release': dict(name=str, description=str, creatorName=str, creatorId=str, visibility=str, isNewUi=bool,
                    featured=bool, descriptionShort=OPT_STR, urls=LIST, creatorEmail=OPT_STR,
                    creatorNameShort=OPT_STR, defaultSourceSetName=OPT_STR, defaultSourceId=OPT_STR,
                    defaultUmapSourceIds=LIST, createdAt=str),
    'model': dict(id=str, instruct=bool, creatorId=str, displayNameShort=str, displayName=str, tlensId=OPT_STR,
                  dimension=OPT_INT, visibility=str, defaultSourceSetName=OPT_STR, defaultSourceId=OPT_STR,
                  inferenceEnabled=bool, layers=int, neuronsPerLayer=int, createdAt=str, owner=str, updatedAt=str,
                  website=OPT_STR),
    'sourceset': dict(modelId=str, name=str, creatorId=str, hasDashboards=bool, visibility=str, description=str,
                      type=str, creatorName=str, urls=LIST, creatorEmail=OPT_STR, releaseName=OPT_STR,
                      defaultOfModelId=OPT_STR, defaultRange=int, defaultShowBreaks=bool, showDfa=bool,
                      showCorrelated=bool, showHeadAttribution=bool, showUmap=bool, createdAt=str),
    'source': dict(id=str, modelId=str, setName=str, creatorId=str, hasDashboards=bool, inferenceEnabled=bool,
                   inferenceHosts=LIST, saelensConfig=OPT_STR, saelensRelease=OPT_STR, saelensSaeId=OPT_STR,
                   hfRepoId=OPT_STR, hfFolderId=OPT_STR, visibility=str, defaultOfModelId=OPT_STR, hasUmap=bool,
                   hasUmapLogSparsity=bool, hasUmapClusters=bool, num_prompts=OPT_INT, num_tokens_in_prompt=OPT_INT,
                   dataset=OPT_STR, notes=OPT_STR, createdAt=str),
    'feature': dict(modelId=str, layer=str, index=str, creatorId=OPT_STR, createdAt=str, maxActApprox=OPT_FLOAT,
                    hasVector=bool, vector=LIST, vectorLabel=OPT_STR, vectorDefaultSteerStrength=OPT_FLOAT,
                    hookName=OPT_STR, topkCosSimIndices=LIST, topkCosSimValues=LIST, neuron_alignment_indices=LIST,
                    neuron_alignment_values=LIST, neuron_alignment_l1=LIST, correlated_neurons_indices=LIST,
                    correlated_neurons_pearson=LIST, correlated_neurons_l1=LIST, correlated_features_indices=LIST,
                    correlated_features_pearson=LIST, correlated_features_l1=LIST, neg_str=LIST, neg_values=LIST,
                    pos_str=LIST, pos_values=LIST, frac_nonzero=FLOAT, freq_hist_data_bar_heights=LIST,
                    freq_hist_data_bar_values=LIST, logits_hist_data_bar_heights=LIST,
                    logits_hist_data_bar_values=LIST, decoder_weights_dist=LIST),
    'activation': dict(id=str, tokens=LIST, index=str, layer=str, modelId=str, maxValue=FLOAT, maxValueTokenIndex=int,
                       minValue=FLOAT, values=LIST, creatorId=str, dataSource=OPT_STR, dataIndex=OPT_STR,
                       dfaValues=LIST, dfaTargetIndex=OPT_INT, dfaMaxValue=OPT_FLOAT, createdAt=str, lossValues=LIST,
                       logitContributions=OPT_STR, binMin=OPT_FLOAT, binMax=OPT_FLOAT, binContains=OPT_FLOAT,
                       qualifyingTokenIndex=OPT_INT),
}


def check_row(row: dict, kind: str) -> None:
    """Exactly the schema's fields, in its order, each of its type (bool is not a number here)."""
    assert list(row) == list(SCHEMA[kind]), kind
    for key, typ in SCHEMA[kind].items():
        ok = typ if isinstance(typ, tuple) else (typ,)
        assert isinstance(row[key], ok) and (bool in ok or not isinstance(row[key], bool)), (kind, key, row[key])


def read_gz(path: str) -> list[dict]:
    assert open(path, 'rb').read(2) == b'\x1f\x8b'  # gzip, as Neuronpedia's importer reads them
    with gzip.open(path, 'rt', encoding='ascii') as f:
        return [json.loads(line) for line in f]


def read_export(folder: str) -> dict:
    """Every file of one <model>/<source>/ folder: the four header rows and all batches' rows, batch by batch."""
    out = {}
    for name in ('release', 'model', 'sourceset', 'source'):
        lines = open(os.path.join(folder, f"{name}.jsonl")).read().splitlines()
        assert len(lines) == 1
        out[name] = json.loads(lines[0])
    for sub in ('features', 'activations'):
        paths = sorted(glob.glob(os.path.join(folder, sub, '*')), key=lambda p: int(p.split('-')[-1].split('.')[0]))
        assert all(p.endswith('.jsonl.gz') for p in paths)
        out[sub] = [read_gz(p) for p in paths]
    return out


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """A tiny site built as a user would, with --neuronpedia=True, and its export read back."""
    s = ti.build_site(str(tmp_path_factory.mktemp('np')), '--neuronpedia=True')
    folders = glob.glob(os.path.join(s['site'], 'neuronpedia', '*', '*'))
    assert len(folders) == 1
    s.update(folder=folders[0], export=read_export(folders[0]), feats=ti.read_features(s['site']),
             meta=json.load(open(os.path.join(s['site'], 'meta.json'))))
    return s


def text_of(site: dict, token: int) -> str:
    """A token's text straight from the tokenizer (not from the site's VOCAB)."""
    return site['enc'].decode_single_token_bytes(token).decode('utf-8', errors='replace')


def test_layout_and_header_rows(site):
    ex, meta = site['export'], site['meta']
    model_id, source_id = site['folder'].split(os.sep)[-2:]
    assert sorted(os.listdir(site['folder'])) == ['activations', 'features', 'model.jsonl', 'release.jsonl',
                                                  'source.jsonl', 'sourceset.jsonl']
    assert not glob.glob(os.path.join(site['site'], 'neuronpedia', '**', '*.tmp*'), recursive=True)
    for name in ('release', 'model', 'sourceset', 'source'):
        check_row(ex[name], name)
        datetime.fromisoformat(ex[name]['createdAt'])
    assert ex['model']['id'] == ex['sourceset']['modelId'] == ex['source']['modelId'] == model_id
    assert ex['source']['id'] == source_id == f"0-{ex['sourceset']['name']}"  # Neuronpedia: '<layer>-<set>'
    assert ex['source']['setName'] == ex['sourceset']['name'] == ex['release']['defaultSourceSetName']
    assert ex['sourceset']['releaseName'] == ex['release']['name']
    assert all(c.isalnum() or c == '-' for c in model_id + source_id + ex['release']['name'])
    assert (ex['model']['layers'], ex['model']['dimension']) == (1, 16)
    assert ex['source']['dataset'] == 'data' and '/' not in json.dumps([ex[n] for n in ('release', 'sourceset')])
    assert (ex['source']['num_prompts'], ex['source']['num_tokens_in_prompt']) == (meta['n_contexts'],
                                                                                  meta['context_length'])
    assert len(ex['features']) == len(ex['activations']) == 1  # 40 features: one batch


def test_feature_rows_equal_the_site(site):
    rows = [r for batch in site['export']['features'] for r in batch]
    model_id, source_id = site['folder'].split(os.sep)[-2:]
    assert [r['index'] for r in rows] == [str(i) for i in range(ti.N_FEAT)]
    V = site['enc'].n_vocab
    for r in rows:
        check_row(r, 'feature')
        rec = site['feats'][int(r['index'])]
        assert (r['modelId'], r['layer']) == (model_id, source_id)
        assert r['maxActApprox'] == rec['max'] and r['frac_nonzero'] == rec['density']
        assert r['frac_nonzero'] == rec['n_fire'] / site['meta']['n_tokens']
        assert r['pos_str'] == [text_of(site, t) for t, _ in rec['logits']['pos']]
        assert r['neg_str'] == [text_of(site, t) for t, _ in rec['logits']['neg']]
        assert r['pos_values'] == [w for _, w in rec['logits']['pos']] == sorted(r['pos_values'], reverse=True)
        assert r['neg_values'] == [w for _, w in rec['logits']['neg']] == sorted(r['neg_values'])
        assert len(r['pos_str']) == len(r['neg_str']) == le.N_LOGITS
        assert r['topkCosSimIndices'] == [j for j, _ in rec['cos']] and r['topkCosSimValues'] == [c for _, c in
                                                                                                  rec['cos']]
        heights, values = r['freq_hist_data_bar_heights'], r['freq_hist_data_bar_values']
        assert heights == rec['hist'] and len(values) == fs.HIST_BINS and sum(heights) == rec['n_fire']
        step = rec['max'] / fs.HIST_BINS  # bins of (0, max]: bar values are their centres
        assert values == pytest.approx([step * (j + 0.5) for j in range(fs.HIST_BINS)], abs=1e-5)
        lh, lv, lo, hi = r['logits_hist_data_bar_heights'], r['logits_hist_data_bar_values'], rec['logits']['lo'], \
            rec['logits']['hi']
        assert lh == rec['logits']['hist'] and sum(lh) == V and len(lv) == len(lh)
        assert lv == pytest.approx([lo + (hi - lo) * (j + 0.5) / len(lh) for j in range(len(lh))], abs=1e-5)
    assert rows[7]['frac_nonzero'] == 0 and rows[7]['maxActApprox'] == 0  # the dead feature is listed too


def test_activation_rows_equal_the_site_windows(site):
    rows = [r for batch in site['export']['activations'] for r in batch]
    assert len({r['id'] for r in rows}) == len(rows)
    by_feature = {}
    for r in rows:
        check_row(r, 'activation')
        by_feature.setdefault(int(r['index']), []).append(r)
    for fi, rec in site['feats'].items():
        windows = [(-1, rec['max'], -1, w) for w in rec['top']]
        windows += [(iv['lo'], iv['hi'], iv['share'], w) for iv in rec['intervals'] for w in iv['samples']]
        got = by_feature.get(fi, [])
        assert len(got) == len(windows), fi
        for r, (lo, hi, share, w) in zip(got, windows):
            assert r['values'] == w['acts'] and len(r['tokens']) == len(r['values'])
            assert r['tokens'] == [text_of(site, t) for t in w['tokens'][:len(w['acts'])]]
            assert r['maxValue'] == max(w['acts']) == r['values'][r['maxValueTokenIndex']]
            assert r['minValue'] == min(w['acts'])
            q = r['qualifyingTokenIndex']
            assert q == w['pos'] - w['start'] and r['values'][q] == pytest.approx(w['act'], abs=1e-3)
            assert (r['binMin'], r['binMax'], r['binContains']) == (lo, hi, share)
            if lo != -1:  # an interval's sample lies in it
                assert lo - 1e-3 <= r['values'][q] <= hi + 1e-3
    assert 7 not in by_feature and sum(len(v) for v in by_feature.values()) == len(rows)


def reshard(site_dir: str, per_file: int) -> None:
    """The site's features/NNNN.js rewritten with per_file features each (meta.json's features_per_file)."""
    records = list(ti.read_features(site_dir).values())
    for path in glob.glob(os.path.join(site_dir, 'features', '*.js')):
        os.remove(path)
    for f0 in range(0, len(records), per_file):
        with open(os.path.join(site_dir, 'features', f"{f0 // per_file:04d}.js"), 'w', encoding='ascii') as f:
            f.write(f"loadFeatures({site_build.js(records[f0:f0 + per_file])});\n")
    meta = json.load(open(os.path.join(site_dir, 'meta.json')))
    json.dump({**meta, 'features_per_file': per_file}, open(os.path.join(site_dir, 'meta.json'), 'w'))


def test_batches_stream_and_concatenate(site, tmp_path, monkeypatch):
    """Smaller batches over smaller feature files: several batch-N files that together hold the same rows, and
    each feature file is read once (RAM holds one file's records, never all)."""
    copy = str(tmp_path / 'site')
    shutil.copytree(site['site'], copy, ignore=shutil.ignore_patterns('neuronpedia'))
    reshard(copy, 8)
    reads = []
    read_site_data = npx.read_site_data
    monkeypatch.setattr(npx, 'read_site_data', lambda p: reads.append(os.path.basename(p)) or read_site_data(p))
    monkeypatch.setattr(npx, 'FEATURES_PER_BATCH', 16)
    folder = npx.export_site(copy, 1, 16, quiet=True)
    ex = read_export(folder)
    assert [len(b) for b in ex['features']] == [16, 16, 8]
    assert [r for b in ex['features'] for r in b] == site['export']['features'][0]
    assert [r for b in ex['activations'] for r in b] == site['export']['activations'][0]
    assert {r['index'] for r in ex['activations'][1]} <= {str(i) for i in range(16, 32)}
    assert sorted(reads) == [f"{i:04d}.js" for i in range(5)] + ['vocab.js']


def test_failed_export_leaves_no_partial_file(site, tmp_path, monkeypatch):
    copy = str(tmp_path / 'site')
    shutil.copytree(site['site'], copy, ignore=shutil.ignore_patterns('neuronpedia'))
    monkeypatch.setattr(npx, 'FEATURES_PER_BATCH', 16)
    feature_row = npx.feature_row

    def failing(record, *args):
        if record['id'] == 20:
            raise RuntimeError('disk full')
        return feature_row(record, *args)

    monkeypatch.setattr(npx, 'feature_row', failing)
    with pytest.raises(RuntimeError):
        npx.export_site(copy, 1, 16, quiet=True)
    folder = glob.glob(os.path.join(copy, 'neuronpedia', '*', '*'))[0]
    for sub in ('features', 'activations'):
        assert os.listdir(os.path.join(folder, sub)) == ['batch-0.jsonl.gz']  # batch 1 never looks complete
    assert len(read_gz(os.path.join(folder, 'features', 'batch-0.jsonl.gz'))) == 16


def test_off_by_default_and_incomplete_site_refused(tmp_path):
    assert site_build.SiteSettings().neuronpedia is False
    assert re.search(r'--neuronpedia\s+= False', run_script('build_interface.py', '--help').stdout)
    with pytest.raises(npx.UserError, match='not a complete site'):
        npx.export_site(str(tmp_path), 1, 16)
