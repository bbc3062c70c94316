"""Tests for body decoding: declared charsets first (header, BOM, <meta>), then detection."""

from __future__ import annotations

import codecs

import pytest

from scraper.encoding import decode, detect_encoding

RUSSIAN = (
    "Москва — столица России, крупнейший по численности населения город страны и её "
    "политический, экономический и культурный центр. Город расположен на реке Москве в центре "
    "Восточно-Европейской равнины. Впервые упоминается в летописи под 1147 годом, когда князь "
    "Юрий Долгорукий пригласил сюда своих союзников."
)
JAPANESE = (
    "東京は日本の首都であり、世界有数の大都市である。人口は約千四百万人で、政治、経済、"
    "文化の中心地として知られている。江戸時代には徳川幕府が置かれ、明治維新の後に東京と改称された。"
)
CHINESE = (
    "北京是中华人民共和国的首都，是全国的政治中心、文化中心，也是国际交往中心和科技创新中心。"  # noqa: RUF001
    "北京历史悠久，有着三千多年的建城史和八百多年的建都史。"  # noqa: RUF001
)
GERMAN = (
    "Über die Brücke gehen wir später in die Altstadt. Grüße aus Köln! Die Bäckerei öffnet früh, "
    "und die Straßenbahn fährt pünktlich zum Dom. Schöne Grüße von Jürgen und Bärbel. Der Rhein "
    "ist einer der längsten Flüsse Europas; er fließt durch den Bodensee und mündet in die Nordsee."
)
FRENCH_SHORT = (
    "Le château de Versailles, où résidèrent les rois de France, est célèbre pour sa galerie des "
    "Glaces. Les élèves étudient l'histoire française à l'école : ça leur plaît beaucoup, même "
    "s'ils préfèrent les vacances d'été."
)
FRENCH_LONG = (
    FRENCH_SHORT + " Noël approche, et l'on prépare déjà la bûche.\n"
    "La Bretagne est une région de l'ouest de la France, réputée pour ses côtes découpées, ses "
    "phares et ses crêpes. Chaque été, des milliers de touristes y découvrent les forêts "
    "mystérieuses, les menhirs de Carnac et les ports de pêche où l'on déguste huîtres et "
    "galettes de sarrasin.\n"
    "À Paris, le musée du Louvre accueille chaque année près de neuf millions de visiteurs. On y "
    "admire la Joconde, la Vénus de Milo et la Victoire de Samothrace, mais aussi des oeuvres "
    "moins connues qui méritent qu'on s'y arrête.\n"
    "Le fromage occupe une place privilégiée dans la gastronomie française : camembert, "
    "roquefort, comté ou reblochon, chaque région possède ses spécialités."
)


def page(text: str, head: str = "") -> str:
    paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n"))
    return f"<html><head>{head}<title>Page</title></head><body>{paragraphs}</body></html>"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html; charset=windows-1251", "cp1251"),
        ('text/html; charset="UTF-8"', "utf-8"),
        ("text/html;charset='koi8-r'", "koi8-r"),
        ("text/html; Charset = Shift_JIS", "cp932"),  # as browsers read it: Windows' superset
    ],
)
def test_header_charset_is_used(content_type: str, expected: str) -> None:
    assert detect_encoding(b"<p>plain</p>", content_type) == expected


def test_header_charset_wins_over_meta() -> None:
    html = page(RUSSIAN, head='<meta charset="koi8-r">')
    text, used = decode(html.encode("cp1251"), "text/html; charset=windows-1251")
    assert used == "cp1251"
    assert text == html


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
)
def test_bom_decodes_and_is_stripped(bom: bytes, codec: str) -> None:
    html = page(RUSSIAN)
    text, _ = decode(bom + html.encode(codec))
    assert text == html
    assert detect_encoding(bom + html.encode(codec)) == codec


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1251">',
        "<meta charset=windows-1251>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">',
        "<META HTTP-EQUIV='content-type' CONTENT='text/html;charset=windows-1251'>",
    ],
)
def test_meta_prescan(meta: str) -> None:
    html = page(RUSSIAN, head=meta)
    text, used = decode(html.encode("cp1251"))
    assert used == "cp1251"
    assert text == html


def test_meta_after_first_kilobyte_is_not_read() -> None:
    body = b"<!--" + b" " * 1100 + b'--><meta charset="koi8-r"><p>ascii</p>'
    assert detect_encoding(body) == "utf-8"


def test_meta_claiming_utf16_means_utf8() -> None:
    html = page("Grüße, Мир", head='<meta charset="utf-16">')
    text, used = decode(html.encode("utf-8"))
    assert used == "utf-8"
    assert text == html


@pytest.mark.parametrize("text", [RUSSIAN, JAPANESE, FRENCH_LONG, "plain ascii"])
def test_undeclared_utf8(text: str) -> None:
    html = page(text)
    assert decode(html.encode("utf-8")) == (html, "utf-8")


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        pytest.param(RUSSIAN, "cp1251", id="russian-cp1251"),
        pytest.param(JAPANESE, "shift_jis", id="japanese-shift_jis"),
        pytest.param(CHINESE, "gbk", id="chinese-gbk"),
        pytest.param(GERMAN, "cp1252", id="german-cp1252"),
        pytest.param(GERMAN, "latin-1", id="german-latin-1"),
        pytest.param(FRENCH_SHORT, "cp1252", id="french-cp1252"),
        pytest.param(FRENCH_SHORT, "latin-1", id="french-latin-1"),
    ],
)
def test_undeclared_legacy_encoding_is_detected(text: str, codec: str) -> None:
    html = page(text)
    decoded, _ = decode(html.encode(codec))
    assert decoded == html


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        pytest.param(FRENCH_LONG, "cp1252", id="paragraphs-cp1252"),
        pytest.param(FRENCH_LONG, "latin-1", id="paragraphs-latin-1"),
        pytest.param(FRENCH_SHORT + " « Citation » — 20 € “net”", "cp1252", id="quotes-cp1252"),
    ],
)
def test_undeclared_french_text(text: str, codec: str) -> None:
    html = page(text)
    decoded, _ = decode(html.encode(codec))
    assert decoded == html


KOREAN = "이것은 한국어 웹 페이지입니다. 우리는 문자 인코딩 감지를 테스트하고 있습니다. 서울은 대한민국의 수도입니다."
CZECH = "Příliš žluťoučký kůň úpěl ďábelské ódy. Dobrý den, jak se máte? Děkuji, mám se dobře."
POLISH = "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig. Szczęśliwego nowego roku!"
LITHUANIAN = "Lietuvių kalba yra viena seniausių kalbų. Ąžuolas, ėriukas, šuo, žąsis."


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        pytest.param("Café – “naïve” €5 déjà", "cp1252", id="french-line-cp1252"),  # noqa: RUF001
        pytest.param("Le café était très animé; déjà vu à côté, naïve façade — “quoted” €10", "cp1252", id="cp1252"),
        pytest.param("Señor Muñoz: ¡Olé!", "cp1252", id="spanish-line-cp1252"),
        pytest.param("<h1>Produkt</h1><p>Maße: 20 × 30 cm, Gewicht: 2 kg</p>Zurück", "cp1252", id="german-line"),  # noqa: RUF001
        pytest.param("Größe: 5 Äpfel", "cp1252", id="german-words-cp1252"),
        pytest.param(CZECH, "cp1250", id="czech-cp1250"),
        # a Latin letter in a Russian word (a typo) leaves the page Russian
        pytest.param("Москва - столица России, и цeна билета высокая.", "cp1251", id="typo-cp1251"),  # noqa: RUF001
        pytest.param(RUSSIAN + " Мoскве цeна", "cp1251", id="typos-cp1251"),  # noqa: RUF001
        pytest.param(POLISH, "cp1250", id="polish-cp1250"),
        pytest.param(LITHUANIAN, "cp1257", id="lithuanian-cp1257"),
        pytest.param(KOREAN, "euc-kr", id="korean-euc-kr"),
        pytest.param("這是一個中文網頁。我們正在測試字元編碼的偵測。台北是一個美麗的城市。", "big5", id="chinese-big5"),
    ],
)
def test_a_line_of_undeclared_text_is_read_in_its_encoding(text: str, codec: str) -> None:
    """One line is little for a detector: French came out as cp1257 ("déją"), Czech or Polish as
    cp1252."""
    html = page(text)
    assert decode(html.encode(codec))[0] == html


@pytest.mark.parametrize(
    ("text", "codec"),
    [(JAPANESE, "shift_jis"), (JAPANESE, "euc-jp"), (CHINESE, "gbk"), (KOREAN, "euc-kr")],
    ids=["shift_jis", "euc-jp", "gbk", "euc-kr"],
)
@pytest.mark.parametrize("extra", range(4))
def test_a_large_undeclared_page_is_not_misread_where_its_sample_ends(text: str, codec: str, extra: int) -> None:
    """The detector reads the first 64 KiB: cut inside a two-byte character, a Shift_JIS, GBK
    or EUC page read as none of them, and came out as cp1252 or cp874 mojibake."""
    html = page("\n".join([text] * (70_000 // len(text.encode(codec)))) + "x" * extra)
    assert len(html.encode(codec)) > 65_536
    assert decode(html.encode(codec))[0] == html


def test_wrong_header_charset_replaces_instead_of_raising() -> None:
    html = page(RUSSIAN)
    text, used = decode(html.encode("cp1251"), "text/html; charset=utf-8")
    assert used == "utf-8"
    assert "\ufffd" in text
    assert text.startswith("<html><head><title>Page</title>")


@pytest.mark.parametrize("content_type", ["text/html; charset=x-no-such-charset", "text/html"])
def test_unknown_or_missing_header_charset_is_ignored(content_type: str) -> None:
    html = page(RUSSIAN, head='<meta charset="windows-1251">')
    assert decode(html.encode("cp1251"), content_type) == (html, "cp1251")


def test_empty_body() -> None:
    assert decode(b"") == ("", "utf-8")


SMART = "“Quoted” €10 — ok, café"


@pytest.mark.parametrize("label", ["ISO-8859-1", "latin1", "us-ascii", "ascii", "l1", "iso_8859-1"])
@pytest.mark.parametrize("where", ["header", "meta"])
def test_latin1_and_ascii_labels_are_read_as_windows_1252(label: str, where: str) -> None:
    """As browsers and Scrapy read them (WHATWG's encoding labels): taken literally, cp1252's
    quotes, dashes and euro sign became invisible control characters, and with an ASCII label
    every accented letter a U+FFFD, without a word."""
    html = page(SMART, head=f'<meta charset="{label}">' if where == "meta" else "")
    content_type = f"text/html; charset={label}" if where == "header" else "text/html"
    assert decode(html.encode("cp1252"), content_type) == (html, "cp1252")


def test_shift_jis_labels_are_read_as_the_windows_superset_browsers_use() -> None:
    text = "①ＮＥＣ特殊文字"  # characters of Windows' Shift_JIS (cp932) only
    assert decode(page(text).encode("cp932"), "text/html; charset=Shift_JIS") == (page(text), "cp932")


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        pytest.param("Résumé: señor", "latin-1", id="latin-1-two-words"),
        pytest.param("naïve", "latin-1", id="latin-1-one-word"),
        pytest.param("Crème brûlée", "cp1252", id="cp1252-two-words"),
        pytest.param("Привет", "cp1251", id="cyrillic-one-word"),
        pytest.param("Zażółć gęślą", "cp1250", id="polish-two-words"),
    ],
)
def test_a_few_undeclared_words_are_read_as_windows_1252_unless_they_cannot_be(text: str, codec: str) -> None:
    """A few words leave the detector guessing (cp1250 at 0.011 against cp1252 at 0.008 for
    "Résumé: señor", which came out "seńor"): then a page is read as cp1252, the web's default
    for pages that declare nothing, unless that reading makes no words (letters past ASCII alone,
    as Cyrillic read so: "Ïðèâåò"; symbols inside words: "Za¿ó³æ")."""
    html = page(text)
    assert decode(html.encode(codec))[0] == html


def test_an_undeclared_json_body_with_one_accent_is_read_as_windows_1252() -> None:
    body = '{"a":"é"}'.encode("latin-1")
    assert decode(body, "application/json") == ('{"a":"é"}', "cp1252")
