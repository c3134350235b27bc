"""``fer-ros gallery list|remove|forget|import|export``: inspect, edit and convert galleries.

A gallery is a .json file, an SQLite file (.db/.sqlite) or a postgresql:// URL
(fer_ros.pipeline.recognition.storage). `import` and `export` copy every person from one
to another, e.g. the original system's face_embeddings_pytorch.json into SQLite, or
an SQLite gallery into the fleet's PostgreSQL database. `forget` erases a person on
request: their embeddings overwritten in the storage, a dated tombstone kept so that no
import of an old copy brings them back; running nodes drop them at their next gallery
check (PostgreSQL: at once).
"""

from __future__ import annotations

import argparse
import sys

from fer_ros.pipeline.recognition.gallery import ErasurePending, GalleryError
from fer_ros.pipeline.recognition.storage import copy_gallery, open_storage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    list_p = sub.add_parser("list", help="list the enrolled people")
    list_p.add_argument("gallery")
    remove_p = sub.add_parser("remove", help="remove people")
    remove_p.add_argument("gallery")
    remove_p.add_argument("names", nargs="+")
    forget_p = sub.add_parser(
        "forget", help="erase people on request (overwritten, tombstone kept)",
        description="Erase people: their embeddings are deleted and overwritten in the "
        "gallery's storage, and a dated tombstone (name and date only) keeps any import "
        "of an older copy from bringing them back. A new enrolment is still possible.")
    forget_p.add_argument("gallery")
    forget_p.add_argument("names", nargs="+")
    for action, text in (("import", "copy every person of SOURCE into GALLERY"),
                         ("export", "copy every person of GALLERY into TARGET")):
        copy_p = sub.add_parser(action, help=text, description=text)
        if action == "import":
            copy_p.add_argument("gallery")
            copy_p.add_argument("source")
        else:
            copy_p.add_argument("gallery")
            copy_p.add_argument("target")


def _list(location: str) -> None:
    storage = open_storage(location)
    gallery = storage.load()
    print(f"{storage.location}: model {gallery.model}, {gallery.dim}-d, "
          f"{len(gallery)} people ({gallery.source_format})")
    for name in gallery.names():
        person = gallery.people[name]
        seen = gallery.last_seen.get(name)
        print(f"  {name}: {len(person.embeddings)} embedding(s), "
              f"last added {person.added[-1] if person.added else '?'}, "
              f"last seen {seen or 'never'}")
    for name, at in sorted(gallery.forgotten.items()):
        print(f"  {name}: forgotten {at}")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            _list(args.gallery)
        elif args.action == "remove":
            storage = open_storage(args.gallery)
            # All or nothing: a name that is not there removes nobody.
            enrolled = storage.load()
            missing = [name for name in args.names if name not in enrolled.people]
            if missing:
                raise GalleryError(f"{', '.join(map(repr, missing))} not in the gallery "
                                   f"{storage.location} (enrolled: "
                                   f"{', '.join(enrolled.names()) or 'nobody'}); "
                                   "nobody removed")
            for name in dict.fromkeys(args.names):
                storage.remove(name)
            print(f"removed {', '.join(args.names)}; {len(storage.load())} people left")
        elif args.action == "forget":
            storage = open_storage(args.gallery)
            if not storage.exists():
                raise GalleryError(f"gallery {storage.location} does not exist")
            pending = False
            for name in dict.fromkeys(args.names):
                try:
                    removed = storage.forget(name)
                    but = ""
                except ErasurePending as exc:  # forgotten, not yet overwritten
                    removed, but, pending = exc.removed, f"; but {exc}", True
                print(f"forgot {name!r}: {removed} embedding(s) erased from "
                      f"{storage.location}; tombstone {storage.forgotten()[name.strip()]}{but}")
            if pending:
                return 1
        else:
            source, target = ((args.source, args.gallery) if args.action == "import"
                              else (args.gallery, args.target))
            source_storage, target_storage = open_storage(source), open_storage(target)
            copied = copy_gallery(source_storage, target_storage)
            print(f"copied {copied.people} people from {source_storage.location} to "
                  f"{target_storage.location}")
            if copied.refused:
                print(f"not copied, forgotten in {target_storage.location}: "
                      f"{', '.join(copied.refused)}")
            if copied.forgotten:
                print(f"forgotten there too: {', '.join(copied.forgotten)}")
        return 0
    except (GalleryError, OSError) as exc:
        print(f"fer-ros gallery: {exc}", file=sys.stderr)
        return 1
