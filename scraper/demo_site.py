"""A deterministic, offline demo shop on 127.0.0.1, so the demo command, integration
tests and benchmarks have a realistic site to crawl without touching the network."""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from aiohttp import web

_CATEGORY_NAMES = (
    "Books", "Home & Garden", "Kitchen", "Toys", "Music", "Outdoor",
    "Electronics", "Clothing", "Sports", "Beauty", "Office", "Pets",
)  # fmt: skip
_ADJECTIVES = (
    "Vintage", "Compact", "Deluxe", "Rustic", "Crème", "Sturdy", "Elegant",
    "Classic", "Tiny", "Royal", "Handmade", "Modern",
)  # fmt: skip
_MATERIALS = ("Brass", "Oak", "Linen", "Ceramic", "Steel", "Wool", "Glass", "Bamboo")
_NOUNS = (
    "Lamp", "Notebook", "Teapot", "Salt & Pepper Mill", "Backpack", "Clock",
    "Scarf", "Speaker", "Vase", "Puzzle", "Kettle", "Chess Set",
)  # fmt: skip
_PHRASES = (
    "Loved by customers since 1998.",
    "Ships in a recyclable box.",
    "Each piece is slightly unique.",
    "Backed by a two-year warranty.",
    'Perfect as a "just because" gift.',
    "Care: wipe with a dry cloth.",
)
_FILLER = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis "
    "nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. "
)
_FILLER_ROW = 200
_ROBOTS_TXT = "User-agent: *\nAllow: /\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    slug: str
    title: str
    price: Decimal
    rating: int
    stock: int
    category: str
    sku: str
    description: str
    currency: str = "£"

    @property
    def path(self) -> str:
        return f"/product/{self.id}-{self.slug}.html"

    @property
    def price_text(self) -> str:
        return f"{self.currency}{self.price:,.2f}"


@dataclass(frozen=True)
class Catalog:
    categories: tuple[tuple[str, str], ...]
    products: tuple[Product, ...]
    per_page: int = 20
    padding: int = 0

    def in_category(self, slug: str) -> tuple[Product, ...]:
        return tuple(p for p in self.products if p.category == slug)


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def build_catalog(
    products: int = 600,
    *,
    seed: int = 7,
    categories: int = 8,
    per_page: int = 20,
    padding: int = 0,
) -> Catalog:
    if products < 0 or categories < 1 or per_page < 1 or padding < 0:
        raise ValueError("need products >= 0, categories >= 1, per_page >= 1, padding >= 0")
    rng = random.Random(seed)
    names = [*_CATEGORY_NAMES, *(f"Category {i}" for i in range(13, categories + 1))]
    cats = tuple((slugify(name), name) for name in names[:categories])
    items = tuple(_make_product(rng, i, cats[(i - 1) % categories][0]) for i in range(1, products + 1))
    return Catalog(categories=cats, products=items, per_page=per_page, padding=padding)


def _make_product(rng: random.Random, pid: int, category: str) -> Product:
    material, noun = rng.choice(_MATERIALS), rng.choice(_NOUNS)
    title = f"{rng.choice(_ADJECTIVES)} {material} {noun}"
    cents = int(math.exp(rng.uniform(math.log(199), math.log(250_000))))  # many cheap, few dear
    stock = 0 if rng.random() < 0.2 else rng.randint(1, 50)
    blurb = " ".join(rng.sample(_PHRASES, 2))
    return Product(
        id=pid,
        slug=slugify(title),
        title=title,
        price=Decimal(cents).scaleb(-2),
        rating=rng.randint(1, 5),
        stock=stock,
        category=category,
        sku=f"DS-{pid:05d}-{rng.randrange(16**4):04X}",
        description=f"This {noun.lower()} is made of {material.lower()}. {blurb}",
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)} | Demo Shop</title>\n</head>\n<body>\n"
        '<header><a class="logo" href="/">Demo Shop</a></header>\n'
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _render_home(catalog: Catalog) -> str:
    items = "".join(f'<li><a href="/category/{slug}/">{escape(name)}</a></li>\n' for slug, name in catalog.categories)
    return _page("Home", f'<h1>Demo Shop</h1>\n<ul class="categories">\n{items}</ul>')


def _render_listing(name: str, products: tuple[Product, ...], page: int, pages: int) -> str:
    articles = "".join(
        f'<article class="product"><h3><a href="{p.path}">{escape(p.title)}</a></h3>'
        f'<p class="price">{escape(p.price_text)}</p></article>\n'
        for p in products
    )
    pager = f'<li class="current">Page {page} of {pages}</li>'
    if page < pages:
        pager += f'<li class="next"><a href="page-{page + 1}.html">next</a></li>'
    body = f'<h1>{escape(name)}</h1>\n<section class="products">\n{articles}</section>\n<ul class="pager">{pager}</ul>'
    return _page(f"{name} - page {page}", body)


def _render_product(p: Product, category_name: str, padding: int) -> str:
    stock = f"In stock ({p.stock} available)" if p.stock else "Out of stock"
    stars = "★" * p.rating + "☆" * (5 - p.rating)
    description = escape(p.description).replace(". ", ".\n          ")
    body = f"""<ul class="breadcrumb">
  <li><a href="/">Home</a></li>
  <li><a href="/category/{p.category}/">{escape(category_name)}</a></li>
  <li class="active"><a href="{p.path}">{escape(p.title)}</a></li>
</ul>
<h1>
      {escape(p.title)}
    </h1>
<p class="price">
    {escape(p.price_text)}  </p>
<p class="rating" data-rating="{p.rating}">{stars} {p.rating} out of 5</p>
<p class="stock">{stock}</p>
<table class="product-info">
  <tr><th>SKU</th><td class="sku">{escape(p.sku)}</td></tr>
  <tr><th>Category</th><td class="category">{escape(category_name)}</td></tr>
</table>
<p class="description">
        {description}
</p>{_specifications(p, padding)}"""
    return _page(p.title, body)


def _specifications(p: Product, padding: int) -> str:
    """Exactly `padding` characters of ASCII filler text, split over table rows."""
    if padding <= 0:
        return ""
    start = p.id % len(_FILLER)
    text = (_FILLER * (2 + padding // len(_FILLER)))[start : start + padding]
    rows = "".join(
        f"<tr><th>Spec {i // _FILLER_ROW + 1}</th><td>{text[i : i + _FILLER_ROW]}</td></tr>\n"
        for i in range(0, padding, _FILLER_ROW)
    )
    return f'\n<table class="specifications">\n{rows}</table>'


class _Site:
    """Route handlers over one catalog, with rendered pages cached per path."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.names = dict(catalog.categories)
        self.by_category = {slug: catalog.in_category(slug) for slug in self.names}
        self.by_id = {p.id: p for p in catalog.products}
        self.cache: dict[str, bytes] = {}

    async def home(self, request: web.Request) -> web.Response:
        return self._html(request, lambda: _render_home(self.catalog))

    async def listing(self, request: web.Request) -> web.Response:
        slug = request.match_info["slug"]
        page = int(request.match_info.get("n", "1"))
        products = self.by_category.get(slug)
        if products is None:
            raise web.HTTPNotFound()
        per_page = self.catalog.per_page
        pages = max(1, math.ceil(len(products) / per_page))
        if not 1 <= page <= pages:
            raise web.HTTPNotFound()
        chunk = products[(page - 1) * per_page : page * per_page]
        return self._html(request, lambda: _render_listing(self.names[slug], chunk, page, pages))

    async def product(self, request: web.Request) -> web.Response:
        product = self.by_id.get(int(request.match_info["id"]))
        if product is None or product.slug != request.match_info["slug"]:
            raise web.HTTPNotFound()
        name = self.names[product.category]
        return self._html(request, lambda: _render_product(product, name, self.catalog.padding))

    async def robots(self, _request: web.Request) -> web.Response:
        return web.Response(text=_ROBOTS_TXT, content_type="text/plain")

    def _html(self, request: web.Request, render: Callable[[], str]) -> web.Response:
        body = self.cache.get(request.path)
        if body is None:
            body = self.cache[request.path] = render().encode("utf-8")
        return web.Response(body=body, content_type="text/html", charset="utf-8")


def make_app(catalog: Catalog) -> web.Application:
    site = _Site(catalog)
    app = web.Application()
    routes: list[tuple[str, Handler]] = [
        ("/", site.home),
        ("/robots.txt", site.robots),
        ("/category/{slug}/", site.listing),
        (r"/category/{slug}/page-{n:\d+}.html", site.listing),
        (r"/product/{id:\d+}-{slug:[a-z0-9-]+}.html", site.product),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


def static_pages(catalog: Catalog) -> Iterator[tuple[str, bytes]]:
    """Every path ``make_app(catalog)`` serves with its exact body (UTF-8), so the shop can be
    written to disk and served by any static file server (benchmarks) byte for byte alike."""
    names = dict(catalog.categories)
    yield "/", _render_home(catalog).encode("utf-8")
    yield "/robots.txt", _ROBOTS_TXT.encode("utf-8")
    per_page = catalog.per_page
    for slug, name in catalog.categories:
        products = catalog.in_category(slug)
        pages = max(1, math.ceil(len(products) / per_page))
        for page in range(1, pages + 1):
            chunk = products[(page - 1) * per_page : page * per_page]
            path = f"/category/{slug}/" if page == 1 else f"/category/{slug}/page-{page}.html"
            yield path, _render_listing(name, chunk, page, pages).encode("utf-8")
    for product in catalog.products:
        yield product.path, _render_product(product, names[product.category], catalog.padding).encode("utf-8")


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run `app` on host:port (0 picks a free port) and yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        netloc = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{netloc}:{bound_port}"
    finally:
        await runner.cleanup()
