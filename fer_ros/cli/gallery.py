"""``fer-ros gallery list|remove``: inspect and edit a gallery file."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    list_p = sub.add_parser("list", help="list the enrolled people")
    list_p.add_argument("gallery")
    remove_p = sub.add_parser("remove", help="remove people")
    remove_p.add_argument("gallery")
    remove_p.add_argument("names", nargs="+")


def run(args: argparse.Namespace) -> int:
    from fer_ros.pipeline import Gallery, GalleryError

    try:
        gallery = Gallery.load(args.gallery)
        if args.action == "list":
            print(f"{args.gallery}: model {gallery.model}, {gallery.dim}-d, "
                  f"{len(gallery)} people ({gallery.source_format})")
            for name in gallery.names():
                person = gallery.people[name]
                print(f"  {name}: {len(person.embeddings)} embedding(s), "
                      f"last added {person.added[-1] if person.added else '?'}")
            return 0
        for name in args.names:
            gallery.remove(name)
        gallery.save()
        print(f"removed {', '.join(args.names)}; {len(gallery)} people left")
        return 0
    except (GalleryError, OSError) as exc:
        print(f"fer-ros gallery: {exc}", file=sys.stderr)
        return 1
