"""Each source repository's tags, listed at most once per run, for the attachment lookups of
every image in it."""

from __future__ import annotations

import threading

from mirror.image.reference import Reference
from mirror.transports.base import ImageSource, TagLister


class TagListings:
    """The tags of the repositories of one source, as the run first listed them.

    Images copying in parallel wait for the one listing of their repository. A repository
    whose listing the source refused, or that needed more pages than allowed, is None for the
    rest of the run: its attachments are looked up tag by tag.
    """

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._listed: dict[tuple[str, str], frozenset[str] | None] = {}
        self._listing: dict[tuple[str, str], threading.Event] = {}

    def tags(self, ref: Reference, pages: int) -> frozenset[str] | None:
        """Every tag of ``ref``'s repository, listed in at most ``pages`` pages the first time
        it is asked for; None where it cannot be listed so."""
        if not isinstance(self.source, TagLister):
            return None
        key = (ref.registry, ref.repository)
        with self._lock:
            if key in self._listed:
                return self._listed[key]
            underway = self._listing.get(key)
            if underway is None:
                self._listing[key] = threading.Event()
        if underway is not None:
            underway.wait()
            with self._lock:
                return self._listed.get(key)
        listed = None
        try:
            listed = self.source.tags(ref, pages)
        finally:  # a listing that failed leaves the waiting images to look tag by tag
            with self._lock:
                self._listed[key] = listed
                self._listing.pop(key).set()
        return listed
