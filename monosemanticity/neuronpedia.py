"""
The feature browser's data in Neuronpedia's upload format, so the features can be published on neuronpedia.org.

    python build_interface.py config/demo/interface.py --neuronpedia=True

writes, inside the site (<out_dir>/interface/neuronpedia/, built and swapped in with the site, so it is complete or
absent), one folder laid out like Neuronpedia's exports bucket (docs.neuronpedia.org/api-and-data/exports):

    <MODEL_ID>/<SOURCE_ID>/
        release.jsonl  model.jsonl  sourceset.jsonl  source.jsonl     one row each
        features/batch-N.jsonl.gz      one row per feature, features N*1024 ... N*1024+1023
        activations/batch-N.jsonl.gz   one row per shown example window of those features (top + interval samples)

The rows have the fields (names, order, types) of Neuronpedia's own converter, hijohnnylin/neuronpedia
utils/neuronpedia-utils/neuronpedia_utils/convert-saedashboard-to-neuronpedia-export.py and its db_models/*.py
(SourceRelease, Model, SourceSet, Source, Feature, Activation); the histogram fields follow SAEDashboard's
HistogramData (jbloomAus/SAEDashboard sae_dashboard/utils_fns.py: bar_values are the bins' centres, bar_heights their
counts). Every number is copied from the site's own data files (docs/browser.md), which are read back a chunk
at a time, so RAM holds one feature file, not all records. Field by field: docs/browser.md (Neuronpedia export).
"""
import gzip
import json
import os
import re
import uuid
from contextlib import contextmanager
from typing import Iterator, NamedTuple

from monosemanticity.common import UserError, atomic_file, progress, read_json, read_site_data
from model import parse_site

FEATURES_PER_BATCH = 1024  # features per batch-N file (Neuronpedia's export-data.py: FEATURES_EXPLANATIONS_BATCH_SIZE)
GZIP_LEVEL = 5  # the converter's gzip.compress(..., compresslevel=5)
# Neuronpedia's default creator (the converter's fallback DEFAULT_CREATOR_ID); an importer may set its own
CREATOR_ID = 'clkht01d40000jv08hvalcvly'
CREATOR_NAME = 'towards-monosemanticity reproduction'

# The rows' fields, in the order of Neuronpedia's db_models dataclasses (tests/test_neuronpedia.py checks them).
RELEASE_FIELDS = ('name', 'description', 'creatorName', 'creatorId', 'visibility', 'isNewUi', 'featured',
                  'descriptionShort', 'urls', 'creatorEmail', 'creatorNameShort', 'defaultSourceSetName',
                  'defaultSourceId', 'defaultUmapSourceIds', 'createdAt')
MODEL_FIELDS = ('id', 'instruct', 'creatorId', 'displayNameShort', 'displayName', 'tlensId', 'dimension',
                'visibility', 'defaultSourceSetName', 'defaultSourceId', 'inferenceEnabled', 'layers',
                'neuronsPerLayer', 'createdAt', 'owner', 'updatedAt', 'website')
SOURCESET_FIELDS = ('modelId', 'name', 'creatorId', 'hasDashboards', 'visibility', 'description', 'type',
                    'creatorName', 'urls', 'creatorEmail', 'releaseName', 'defaultOfModelId', 'defaultRange',
                    'defaultShowBreaks', 'showDfa', 'showCorrelated', 'showHeadAttribution', 'showUmap', 'createdAt')
SOURCE_FIELDS = ('id', 'modelId', 'setName', 'creatorId', 'hasDashboards', 'inferenceEnabled', 'inferenceHosts',
                 'saelensConfig', 'saelensRelease', 'saelensSaeId', 'hfRepoId', 'hfFolderId', 'visibility',
                 'defaultOfModelId', 'hasUmap', 'hasUmapLogSparsity', 'hasUmapClusters', 'num_prompts',
                 'num_tokens_in_prompt', 'dataset', 'notes', 'createdAt')
FEATURE_FIELDS = ('modelId', 'layer', 'index', 'creatorId', 'createdAt', 'maxActApprox', 'hasVector', 'vector',
                  'vectorLabel', 'vectorDefaultSteerStrength', 'hookName', 'topkCosSimIndices', 'topkCosSimValues',
                  'neuron_alignment_indices', 'neuron_alignment_values', 'neuron_alignment_l1',
                  'correlated_neurons_indices', 'correlated_neurons_pearson', 'correlated_neurons_l1',
                  'correlated_features_indices', 'correlated_features_pearson', 'correlated_features_l1',
                  'neg_str', 'neg_values', 'pos_str', 'pos_values', 'frac_nonzero', 'freq_hist_data_bar_heights',
                  'freq_hist_data_bar_values', 'logits_hist_data_bar_heights', 'logits_hist_data_bar_values',
                  'decoder_weights_dist')
ACTIVATION_FIELDS = ('id', 'tokens', 'index', 'layer', 'modelId', 'maxValue', 'maxValueTokenIndex', 'minValue',
                     'values', 'creatorId', 'dataSource', 'dataIndex', 'dfaValues', 'dfaTargetIndex', 'dfaMaxValue',
                     'createdAt', 'lossValues', 'logitContributions', 'binMin', 'binMax', 'binContains',
                     'qualifyingTokenIndex')


class Names(NamedTuple):
    """Neuronpedia's ids of this SAE (letters, digits and dashes), derived from the site."""
    model_id: str  # e.g. 'pystdlib-1l-128d'
    source_set: str  # e.g. 'mlp-hidden-topk-2048': the site's kind, the SAE's architecture and width
    source_id: str  # '<layer>-<source_set>', Neuronpedia's convention (e.g. '0-mlp-hidden-topk-2048')
    release: str  # '<model_id>-<source_set>'


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes (Neuronpedia's ids)."""
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')


def dataset_name(meta: dict) -> str:
    """The dataset's folder name (e.g. 'pystdlib'): a published row names no local path."""
    return os.path.basename(os.path.normpath(meta['dataset']))


def names_of(meta: dict, n_layer: int, n_embd: int) -> Names:
    layer, kind = parse_site(meta['site'])
    model_id = slug(f"{dataset_name(meta)}-{n_layer}l-{n_embd}d")
    source_set = slug(f"{kind}-{meta['architecture']}-{meta['n_features']}")
    return Names(model_id, source_set, f"{layer}-{source_set}", f"{model_id}-{source_set}")


def token_text(entry) -> str:
    """A VOCAB entry as a string: its text, or its bytes (part of a character) decoded with U+FFFD replacements."""
    return entry if isinstance(entry, str) else bytes(entry).decode('utf-8', errors='replace')


def bin_centres(lo: float, hi: float, n: int) -> list[float]:
    """Centres of n equal-width bins of [lo, hi] (SAEDashboard HistogramData.bar_values, rounded to 5 digits)."""
    return [round(lo + (hi - lo) * (j + 0.5) / n, 5) for j in range(n)]


def header_rows(meta: dict, names: Names, n_layer: int, n_embd: int, created: str) -> dict[str, dict]:
    """release / model / sourceset / source .jsonl rows (one each)."""
    about = (f"{meta['architecture']} SAE, {meta['n_features']} features on {meta['site']} of a {n_layer}-layer "
             f"transformer trained on {dataset_name(meta)}")
    release = dict(name=names.release, description=f"Towards Monosemanticity reproduction: {about}",
                   creatorName=CREATOR_NAME, creatorId=CREATOR_ID, visibility='PUBLIC', isNewUi=False, featured=False,
                   descriptionShort=about, urls=[], creatorEmail=None, creatorNameShort=CREATOR_NAME,
                   defaultSourceSetName=names.source_set, defaultSourceId=names.source_id, defaultUmapSourceIds=[],
                   createdAt=created)
    model = dict(id=names.model_id, instruct=False, creatorId=CREATOR_ID, displayNameShort=names.model_id,
                 displayName=names.model_id, tlensId=None, dimension=n_embd, visibility='PUBLIC',
                 defaultSourceSetName=names.source_set, defaultSourceId=names.source_id, inferenceEnabled=False,
                 layers=n_layer, neuronsPerLayer=4 * n_embd, createdAt=created, owner=CREATOR_NAME, updatedAt=created,
                 website=None)
    sourceset = dict(modelId=names.model_id, name=names.source_set, creatorId=CREATOR_ID, hasDashboards=True,
                     visibility='PUBLIC', description=about, type='', creatorName=CREATOR_NAME, urls=[],
                     creatorEmail=None, releaseName=names.release, defaultOfModelId=None, defaultRange=1,
                     defaultShowBreaks=True, showDfa=False, showCorrelated=False, showHeadAttribution=False,
                     showUmap=False, createdAt=created)
    source = dict(id=names.source_id, modelId=names.model_id, setName=names.source_set, creatorId=CREATOR_ID,
                  hasDashboards=True, inferenceEnabled=False, inferenceHosts=[], saelensConfig=None,
                  saelensRelease=None, saelensSaeId=None, hfRepoId=None, hfFolderId=None, visibility='PUBLIC',
                  defaultOfModelId=None, hasUmap=False, hasUmapLogSparsity=False, hasUmapClusters=False,
                  num_prompts=meta['n_contexts'], num_tokens_in_prompt=meta['context_length'],
                  dataset=dataset_name(meta), notes=f"site {meta['site']}, {meta['n_tokens']} tokens of split "
                                                    f"{meta['split']}", createdAt=created)
    return {'release': release, 'model': model, 'sourceset': sourceset, 'source': source}


def feature_row(record: dict, names: Names, vocab: list, created: str) -> dict:
    """A feature's row (features/batch-N.jsonl.gz) from its site record."""
    logits, n_bins = record['logits'], len(record['hist'])
    return dict(
        modelId=names.model_id, layer=names.source_id, index=str(record['id']), creatorId=CREATOR_ID,
        createdAt=created, maxActApprox=record['max'], hasVector=False, vector=[], vectorLabel=None,
        vectorDefaultSteerStrength=10, hookName=None,
        topkCosSimIndices=[j for j, _ in record['cos']], topkCosSimValues=[c for _, c in record['cos']],
        neuron_alignment_indices=[], neuron_alignment_values=[], neuron_alignment_l1=[],
        correlated_neurons_indices=[], correlated_neurons_pearson=[], correlated_neurons_l1=[],
        correlated_features_indices=[], correlated_features_pearson=[], correlated_features_l1=[],
        neg_str=[token_text(vocab[t]) for t, _ in logits['neg']], neg_values=[w for _, w in logits['neg']],
        pos_str=[token_text(vocab[t]) for t, _ in logits['pos']], pos_values=[w for _, w in logits['pos']],
        frac_nonzero=record['density'],
        freq_hist_data_bar_heights=record['hist'], freq_hist_data_bar_values=bin_centres(0.0, record['max'], n_bins),
        logits_hist_data_bar_heights=logits['hist'],
        logits_hist_data_bar_values=bin_centres(logits['lo'], logits['hi'], len(logits['hist'])),
        decoder_weights_dist=[])


def activation_rows(record: dict, names: Names, vocab: list, created: str, build_id: str) -> Iterator[dict]:
    """The rows (activations/batch-N.jsonl.gz) of a feature's shown windows: its top examples (bin -1 .. max, as
    the converter marks 'TOP ACTIVATIONS'), then each interval's samples (bin lo .. hi, binContains its share)."""
    bins = [(-1, record['max'], -1, record['top'])]
    bins += [(iv['lo'], iv['hi'], iv['share'], iv['samples']) for iv in record['intervals']]
    n = 0
    for bin_min, bin_max, contains, windows in bins:
        for w in windows:
            values = w['acts']
            top = max(values)
            yield dict(
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"{build_id}/{names.source_id}/{record['id']}/{n}").hex,
                tokens=[token_text(vocab[t]) for t in w['tokens'][:len(values)]], index=str(record['id']),
                layer=names.source_id, modelId=names.model_id, maxValue=top, maxValueTokenIndex=values.index(top),
                minValue=min(values), values=values, creatorId=CREATOR_ID, dataSource=None, dataIndex=None,
                dfaValues=[], dfaTargetIndex=None, dfaMaxValue=None, createdAt=created, lossValues=[],
                logitContributions=None, binMin=bin_min, binMax=bin_max, binContains=contains,
                qualifyingTokenIndex=w['pos'] - w['start'])
            n += 1


@contextmanager
def jsonl_gz(path: str):
    """Write JSON rows into path (gzip, one JSON object a line), atomically (common.atomic_file); yields write(row)."""
    with atomic_file(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=GZIP_LEVEL,
                                                       mtime=0) as gz:
        yield lambda row: gz.write((json.dumps(row, allow_nan=False) + '\n').encode())


def site_records(site_dir: str, per_file: int, f0: int, f1: int) -> Iterator[dict]:
    """The site's records of features f0 ... f1-1, in id order, reading one features/NNNN.js file at a time."""
    for file in range(f0 // per_file, -(-f1 // per_file)):
        for record in read_site_data(os.path.join(site_dir, 'features', f"{file:04d}.js")):
            if f0 <= record['id'] < f1:
                yield record


def export_site(site_dir: str, n_layer: int, n_embd: int, quiet: bool = False) -> str:
    """Write <site_dir>/neuronpedia/<model_id>/<source_id>/ from the finished site in site_dir (its meta.json,
    data/vocab.js and features/*.js); returns that folder. n_layer, n_embd: the transformer's (model.jsonl)."""
    meta_path = os.path.join(site_dir, 'meta.json')
    meta = read_json(meta_path) if os.path.exists(meta_path) else {}
    if not meta.get('complete'):
        raise UserError(f"{site_dir} is not a complete site (no meta.json with complete: true): build it first")
    names = names_of(meta, n_layer, n_embd)
    created, build_id = meta['built'].replace(' ', 'T'), f"{meta['sae']}@{meta['built']}"
    out = os.path.join(site_dir, 'neuronpedia', names.model_id, names.source_id)
    for sub in ('features', 'activations'):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name, row in header_rows(meta, names, n_layer, n_embd, created).items():
        with atomic_file(os.path.join(out, f"{name}.jsonl"), 'w', encoding='ascii') as f:
            f.write(json.dumps(row) + '\n')
    vocab = read_site_data(os.path.join(site_dir, 'data', 'vocab.js'))
    n_feat, batches = meta['n_features'], range(0, meta['n_features'], FEATURES_PER_BATCH)
    for b, f0 in enumerate(progress(batches, desc='neuronpedia export', disable=quiet)):
        with jsonl_gz(os.path.join(out, 'features', f"batch-{b}.jsonl.gz")) as features, \
                jsonl_gz(os.path.join(out, 'activations', f"batch-{b}.jsonl.gz")) as activations:
            for record in site_records(site_dir, meta['features_per_file'], f0, min(f0 + FEATURES_PER_BATCH, n_feat)):
                features(feature_row(record, names, vocab, created))
                for row in activation_rows(record, names, vocab, created, build_id):
                    activations(row)
    return out
