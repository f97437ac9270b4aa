"""Issue 22: no image file can hurt the app. Decoding (Pillow, in a child process) under limits, the app's
cheap checks, data URLs, and the image check process that runs the decoder for the app."""

import base64
import hashlib
import io

import pytest
from PIL import Image

from assistant.engine import image_check
from assistant.engine.runner import images as decoder
from assistant.images import (
    MAX_IMAGE_BYTES,
    ImageError,
    attachment,
    from_data_url,
    read_image_file,
    sniff,
)
from tests.support.tiny_vision import (
    animated_gif_bytes,
    bad_images,
    huge_png_header,
    jpeg_bytes,
    png_bytes,
)


def one_sentence(text: str) -> bool:
    """One sentence a person reads: ends once, no traceback, no newline."""
    return text.endswith(".") and "\n" not in text and "Traceback" not in text and len(text) < 400


# --- the decoder (runs only in child processes) ---------------------------------------------------------


def test_a_good_picture_becomes_rgb_pixels_of_its_size():
    decoded = decoder.decode(png_bytes(48, 32, (200, 40, 40)), name="red.png")
    assert (decoded.width, decoded.height) == (48, 32) and len(decoded.rgb) == 48 * 32 * 3
    assert decoded.rgb[:3] == bytes((200, 40, 40)) and decoded.source_format == "PNG"
    assert decoded.sha256 == hashlib.sha256(png_bytes(48, 32, (200, 40, 40))).hexdigest()


@pytest.mark.parametrize("kind", sorted(bad_images()))
def test_each_bad_file_is_one_sentence_and_never_decoded_whole(kind):
    data, word = bad_images()[kind]
    with pytest.raises(decoder.ImageRefused) as caught:
        decoder.decode(data, name="photo.png")
    sentence = str(caught.value)
    assert word in sentence and "'photo.png'" in sentence and one_sentence(sentence)


def test_a_20000_by_20000_png_is_refused_from_its_header_in_a_moment():
    import time

    data = huge_png_header()
    assert len(data) < 200_000  # a few kilobytes claiming 400 megapixels
    t0 = time.perf_counter()
    with pytest.raises(decoder.ImageRefused, match="20,000 x 20,000 pixels"):
        decoder.decode(data)
    assert time.perf_counter() - t0 < 1.0


def test_exif_orientation_turns_the_picture_upright():
    # Stored 40 x 30, tagged "rotate 90": shown 30 x 40, as a phone camera meant it.
    decoded = decoder.decode(jpeg_bytes(40, 30, orientation=6))
    assert (decoded.width, decoded.height) == (30, 40) and decoded.full_size == (30, 40)
    assert decoded.source_size == (40, 30)


def test_an_animated_file_gives_its_first_frame_only():
    decoded = decoder.decode(animated_gif_bytes(frames=5, size=24))
    assert decoded.animated and (decoded.width, decoded.height) == (24, 24)
    first = Image.open(io.BytesIO(animated_gif_bytes(frames=5, size=24))).convert("RGB").tobytes()
    assert decoded.rgb == first


def test_transparency_is_flattened_onto_white_and_large_pictures_shrink_to_what_the_projector_takes():
    clear = png_bytes(600, 300, (0, 0, 0, 0), mode="RGBA")
    decoded = decoder.decode(clear, max_side_out=224)
    assert (decoded.width, decoded.height) == (224, 112) and decoded.full_size == (600, 300)
    assert decoded.rgb[:3] == b"\xff\xff\xff"
    small = decoder.decode(png_bytes(20, 10), max_side_out=224)
    assert (small.width, small.height) == (20, 10)  # never enlarged


def test_a_mislabelled_file_is_read_as_what_its_bytes_are():
    jpeg = jpeg_bytes()
    assert decoder.decode(jpeg, name="photo.png").source_format == "JPEG"
    assert attachment(jpeg, "photo.png").mime == "image/jpeg"


# --- the app's cheap checks (size, what the first bytes say) ---------------------------------------------


def test_the_app_looks_only_at_size_and_first_bytes():
    assert sniff(png_bytes()) == "image/png" and sniff(jpeg_bytes()) == "image/jpeg"
    assert sniff(animated_gif_bytes()) == "image/gif" and sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"hello") is None and sniff(b"") is None
    for data, words in ((b"", "empty"), (b"hello world", "not a picture"),
                        (b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_IMAGE_BYTES + 1), "more than")):
        with pytest.raises(ImageError, match=words) as caught:
            attachment(data, "x.png")
        assert one_sentence(str(caught.value))


def test_reading_an_image_file_is_bounded_and_says_what_is_wrong(tmp_path):
    with pytest.raises(ImageError, match="There is no image file"):
        read_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        read_image_file(tmp_path)
    with pytest.raises(ImageError, match="character device"):
        read_image_file("/dev/zero")  # an endless stream is refused at once
    import os

    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ImageError, match="FIFO"):
        read_image_file(tmp_path / "fifo.png")  # no wait for a writer
    (tmp_path / "ok.png").write_bytes(png_bytes())
    image = read_image_file(tmp_path / "ok.png")
    assert image.name == "ok.png" and image.width is None  # not decoded in the app


def test_data_urls_are_the_only_way_an_image_arrives_by_value():
    data = png_bytes()
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    image = from_data_url(url)
    assert image.data == data and image.data_url() == url
    # The declared type is not trusted: a JPEG labelled PNG is a JPEG.
    assert from_data_url("data:image/png;base64," + base64.b64encode(jpeg_bytes()).decode()).mime == "image/jpeg"
    for bad, words in (("data:image/png,notbase64", "base64 data URL"), ("http://example.com/a.png", "data URL"),
                       ("data:image/png;base64,@@@", "not valid base64"),
                       ("data:image/png;base64," + "A" * (MAX_IMAGE_BYTES * 2), "larger than")):
        with pytest.raises(ImageError, match=words):
            from_data_url(bad)


# --- the image check: the decoder in a process of its own, for the app ---------------------------------


def test_the_image_check_decodes_in_its_own_process_and_returns_sizes_and_thumbnails():
    images = [attachment(png_bytes(300, 200), "wide.png"), attachment(jpeg_bytes(40, 30, orientation=6), "turned.jpg")]
    checked = image_check.check_images(images, side=64)
    assert [(c.image.width, c.image.height) for c in checked] == [(300, 200), (30, 40)]
    thumb = Image.open(io.BytesIO(checked[0].thumbnail_png))
    assert thumb.format == "PNG" and max(thumb.size) == 64
    assert checked[0].image.data == images[0].data  # the file itself is kept as it is


def test_the_image_check_says_which_image_is_bad_in_one_sentence():
    good = attachment(png_bytes(), "good.png")
    bomb = attachment(huge_png_header(), "bomb.png")
    with pytest.raises(ImageError, match="'bomb.png' is 20,000 x 20,000 pixels") as caught:
        image_check.check_images([good, bomb])
    assert one_sentence(str(caught.value))


def test_a_decoder_that_crashes_costs_its_process_not_the_app(monkeypatch):
    # As if a decoder bug took the process down: the app hears one sentence and carries on.
    monkeypatch.setenv("PYTHONFAULTHANDLER", "")
    real_run = image_check.subprocess.run

    def crashing(cmd, **kwargs):
        return real_run([cmd[0], "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], **kwargs)

    monkeypatch.setattr(image_check.subprocess, "run", crashing)
    with pytest.raises(ImageError, match="SIGSEGV") as caught:
        image_check.check_images([attachment(png_bytes(), "crash.png")])
    assert "the app was not affected" in str(caught.value) and one_sentence(str(caught.value))
