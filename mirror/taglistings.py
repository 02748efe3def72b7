"""Each source repository's tags, listed at most once per run, for the attachment lookups of
every image in it."""

from __future__ import annotations

import logging
import threading

from mirror.image.reference import Reference
from mirror.run import in_background
from mirror.transports.base import ImageSource, TagLister

log = logging.getLogger("mirror.attachments")

#: The most pages a listing may take: fewer than the lookups it replaces for any image (four for
#: a single-platform image: ``.sig``, ``.att``, ``.sbom`` and the referrers tag). At 1,000 tags
#: a page that is 3,000 tags; docker-registry 2.8 sends any number in one page.
MAX_PAGES = 3


class TagListings:
    """The tags of the repositories of one source, as the run first listed them.

    Images copying in parallel wait for the one listing of their repository. A repository
    whose listing the source refused, or that took more than MAX_PAGES pages, is None for the
    rest of the run: its attachments are looked up tag by tag.
    """

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._listed: dict[tuple[str, str], frozenset[str] | None] = {}
        self._listing: dict[tuple[str, str], threading.Event] = {}

    def start(self, ref: Reference) -> None:
        """List ``ref``'s repository in the background, while its image's manifests are read;
        ``tags`` then waits for that listing. A failure there only means lookups tag by tag."""
        if (
            isinstance(self.source, TagLister)
            and (ref.registry, ref.repository) not in self._listed
        ):
            in_background(lambda: self._quietly(ref))  # nobody waits for it: tags() does

    def _quietly(self, ref: Reference) -> None:
        try:
            self.tags(ref)
        except Exception as exc:  # the image's own lookups meet (and report) the same fault
            log.debug("%s: tags listing failed: %s", ref, exc)

    def tags(self, ref: Reference) -> frozenset[str] | None:
        """Every tag of ``ref``'s repository, listed the first time it is asked for; None where
        it cannot be listed in MAX_PAGES pages."""
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
            listed = self.source.tags(ref, MAX_PAGES)
        finally:  # a listing that failed leaves the waiting images to look tag by tag
            with self._lock:
                self._listed[key] = listed
                self._listing.pop(key).set()
        return listed
