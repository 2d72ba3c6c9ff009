"""The prototype store: class prototypes in a FAISS index, their label map and class statistics.

Each class the store knows is summarised by one prototype (its mean embedding) or by up to
``prototypes_per_class`` prototypes (FAISS k-means centroids).  The prototypes live in a FAISS
index built from a factory string (``"Flat"``, ``"HNSW32"``, ``"IVF256,Flat"``, ...) or copied
from a ready-made, empty ``faiss.Index``; each prototype has an int64 FAISS id (IVF indexes
store ids themselves, other types are wrapped in an ``IndexIDMap``) and the store maps those
ids to the user's integer labels.  Queries are answered by nearest-prototype search.

Modules
    ``inputs``: checks and conversions of parameters, embeddings and labels.
    ``contents``: the arrays a store holds (prototypes, label map, per-class sums and
    counts) and how a batch changes them, k-means prototypes included.
    ``faiss_index``: the FAISS adapter (factory string or ready-made index, id map,
    training, search parameters, search with exact fallback).
    ``io``: the store directory (atomic save, checked load).
    ``prototype_store``: ``PrototypeStore``, composing them under one lock.

Metrics
    ``"cosine"``: embeddings, prototypes and queries are L2-normalised and the index uses
    inner product, so every score is a cosine similarity (higher is closer).
    ``"l2"``: raw embeddings, ``METRIC_L2``; scores are squared Euclidean distances, as FAISS
    reports them (lower is closer).

Prototypes
    ``prototypes_per_class=1``: the prototype is the class mean, kept exact across calls to
    ``add`` from a running per-class sum and count (for cosine, the mean of the normalised
    embeddings, normalised again).
    ``prototypes_per_class=k>1``: FAISS k-means (spherical for cosine) over the class's
    embeddings; a class with at most k embeddings keeps one prototype per embedding.  ``add``
    on a known class re-clusters the class's current prototypes, each weighted by the number
    of embeddings it summarises, together with the new embeddings, so memory stays bounded at
    k prototypes per class; the result approximates, but is not always equal to, k-means over
    every embedding ever seen.  The per-class sum and count stay exact either way.

Trainable indexes (IVF, PQ, SQ, ...)
    They need vectors to train on.  Until the store holds ``min_train_size`` prototypes (by
    default the least FAISS accepts: ``nlist`` for IVF, ``2**nbits`` codebook entries for PQ),
    the index stays empty and searches run exactly over the prototypes held (``exact_fallback``
    is True).  When enough prototypes exist, the next mutation trains the index on all of them
    and fills it; later prototypes are added without retraining.  ``train()`` trains (or
    retrains) on demand and raises ``ValueError`` when there are too few prototypes.  FAISS
    suggests about 39 training vectors per IVF list: pass a larger ``min_train_size`` or call
    ``train()`` again once the store has grown for a better quantizer.

Removal
    Replacing or removing prototypes uses ``remove_ids`` where FAISS keeps ids and vectors
    aligned (IVF, and flat-code indexes such as Flat, PQ, SQ); other types (HNSW) are rebuilt
    from the prototypes held.  Once the index is trained, adding prototypes of new classes
    never rebuilds or retrains it.

Thread safety
    One re-entrant lock guards every read and write, so ``classify`` in one thread while
    another thread calls ``add`` sees either the old or the new store, never a mixture.

Persistence
    ``save(dir)`` writes ``index.faiss`` (``faiss.write_index``), the prototype and class
    arrays as ``.npy`` files and ``store.json`` (format name, version, parameters and a
    sha256 checksum of every file) into a temporary directory next to ``dir``, then renames
    it into place.  A store built on a ready-made index also writes that empty index as
    ``template.faiss`` (``store.json`` then holds ``"index": null``) and loads it back as
    its ``index``.  ``load`` verifies every checksum (one streaming read of each file) before
    trusting anything.  ``load(dir, mmap=True)`` memory-maps the index and the arrays so a
    store larger than RAM can answer queries; such a store is read-only.
"""

from siamcl.store.faiss_index import METRICS
from siamcl.store.io import FORMAT_NAME, FORMAT_VERSION
from siamcl.store.prototype_store import PrototypeStore

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "METRICS", "PrototypeStore"]
