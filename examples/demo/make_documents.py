"""Write the demo's bundled documents: ``python -m examples.demo.make_documents``.

The files are committed, so this script runs only when they need to change. The PDF
and DOCX are built by hand, the way tests/test_ingest_backend.py builds them, so no
office suite or PDF library is needed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

DOCUMENTS_DIR = Path(__file__).parent / "documents"

PARAGRAPH = (
    "The ingestion tracker records every job that the knowledge-base backend "
    "accepts. Workers report progress and status events, and frontends list, "
    "inspect, retry and cancel jobs."
)
WORDS = " ".join([PARAGRAPH] * 12)


def pdf_bytes(lines: list[str]) -> bytes:
    """Build a one-page PDF that shows ``lines`` in Helvetica, with a valid xref."""
    operators = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    operators += [f"({line}) Tj T*" for line in lines]
    operators.append("ET")
    stream = "\n".join(operators).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%b\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    document = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(document))
        document += b"%d 0 obj\n%b\nendobj\n" % (number, body)

    xref_offset = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        document += b"%010d 00000 n \n" % offset
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    document += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(document)


def docx_bytes(paragraphs: list[str]) -> bytes:
    """Build the three parts a DOCX needs: content types, relationships, body."""
    main = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    package = "http://schemas.openxmlformats.org/package/2006"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    document_type = (
        "application/vnd.openxmlformats-officedocument.wordprocessingml"
        ".document.main+xml"
    )
    relationships_type = "application/vnd.openxmlformats-package.relationships+xml"
    body = "".join(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" for text in paragraphs)
    parts = {
        "[Content_Types].xml": (
            f'<Types xmlns="{package}/content-types">'
            f'<Default Extension="rels" ContentType="{relationships_type}"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/word/document.xml" ContentType="{document_type}"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}/relationships">'
            f'<Relationship Id="rId1" Type="{office}/officeDocument" '
            'Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            f'<w:document xmlns:w="{main}"><w:body>{body}</w:body></w:document>'
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, xml in parts.items():
            # A fixed timestamp keeps the archive identical from one run to the next.
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            archive.writestr(info, '<?xml version="1.0" encoding="UTF-8"?>' + xml)
    return buffer.getvalue()


def corrupt_pdf_bytes() -> bytes:
    """Return a PDF header followed by binary noise, which no PDF reader accepts."""
    return b"%PDF-1.7\n" + bytes(range(256)) * 8


def documents() -> dict[str, bytes]:
    """Return every bundled document by file name."""
    return {
        "notes.md": f"# Release notes\n\n{WORDS}\n\n## Details\n\n{WORDS}\n".encode(),
        "page.html": (
            "<html><head><title>Tracker</title></head><body><h1>Tracker</h1>"
            f"<p>{WORDS}</p><p>{WORDS}</p></body></html>"
        ).encode(),
        "report.docx": docx_bytes(["Quarterly report", WORDS, WORDS]),
        "scan.pdf": pdf_bytes(["Scanned page one", "alpha beta gamma delta"]),
        "broken.pdf": corrupt_pdf_bytes(),
    }


def main() -> None:
    DOCUMENTS_DIR.mkdir(exist_ok=True)
    for name, content in documents().items():
        (DOCUMENTS_DIR / name).write_bytes(content)
        print(f"wrote {DOCUMENTS_DIR / name} ({len(content)} bytes)")


if __name__ == "__main__":
    main()
