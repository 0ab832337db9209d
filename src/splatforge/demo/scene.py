"""The demo scene: a small procedural still life that `splatforge demo` photographs.

World frame: metres-ish units, z up, the ground is the plane z = 0. The scene is

- a ground disk of radius 3 centred at the origin, textured with soft-edged checker tiles
  (0.5 units) tinted by smooth value noise, like a worn tiled floor;
- five objects resting on it within radius ~1.6 of the origin, each with its own procedural
  solid texture: a striped sphere, a marbled (smooth-noise) sphere, a checkered box, a cylinder
  with a vertical colour gradient and a small box with soft stripes. Sizes, positions, yaw,
  colours and stripe directions are drawn from the seed;
- one directional light (direction from the seed, 50 degrees above the horizon) with hard
  shadows, plus ambient light, Lambert shading only. Shading is view-independent (no specular), so
  a splat model can reproduce it with low-degree SH;
- a plain background colour (black by default, the trainer's default background) beyond the
  ground disk: a constant colour needs no Gaussians at all;
- or, with `sky=True`, an outdoor environment at infinity instead of that colour (`Sky`): a sky
  gradient with a glow around the sun (the light's direction) and soft clouds, above a ring of
  far hills whose ridge varies with azimuth. Being at infinity it has no parallax and no surface a
  camera could triangulate, as a real sky and far background: no SfM point covers it.

Colours are computed in linear RGB; `raycast.render_view` averages its sub-pixel samples and
encodes sRGB. Texture features are at least ~0.1 units wide and edges are softened, so at
256x256 from the demo's orbits (3.6 units from the centre) nothing is finer than a few pixels.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import SplatforgeError

TEXTURE_KINDS = ("checker", "stripes", "noise", "gradient")
GROUND_RADIUS = 3.0
OBJECT_REGION_RADIUS = 1.6  # every object's footprint lies inside this circle


@dataclass(frozen=True)
class Texture:
    """A solid (3D) procedural texture, evaluated at points in the object's local frame by the
    ray caster (`raycast.texture_albedo`).

    kind: "checker" (3D checks of side `scale`, borders at odd multiples of scale / 2),
        "stripes" (period `scale` along `axis`), "noise" (two-octave value noise with cells of
        `scale`), "gradient" (from color_a at `offset` along `axis` to color_b `scale` further on).
    color_a, color_b: linear RGB albedos in [0, 1].
    softness: width of a check or stripe edge, as a fraction of `scale` (0 is a hard edge).
    tint: amplitude of a low-frequency noise that darkens or lightens the albedo (0 = none).
    """

    kind: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    offset: float = 0.0
    softness: float = 0.15
    tint: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TEXTURE_KINDS:
            raise SplatforgeError(f"texture kind must be one of {TEXTURE_KINDS}, got {self.kind!r}")
        if not self.scale > 0:
            raise SplatforgeError(f"texture scale must be > 0, got {self.scale}")


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    texture: Texture

    @property
    def footprint(self) -> float:
        return self.radius


@dataclass(frozen=True)
class Box:
    """A box turned by `yaw` degrees about the vertical axis through `center`."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    yaw: float
    texture: Texture

    @property
    def footprint(self) -> float:
        return math.hypot(self.half_size[0], self.half_size[1])

    @property
    def rotation(self) -> np.ndarray:  # [3, 3] local -> world
        c, s = math.cos(math.radians(self.yaw)), math.sin(math.radians(self.yaw))
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Cylinder:
    """A vertical capped cylinder: axis through (x, y) = `center`, from z = `z_min` to `z_max`."""

    center: tuple[float, float]
    radius: float
    z_min: float
    z_max: float
    texture: Texture

    @property
    def footprint(self) -> float:
        return self.radius


@dataclass(frozen=True)
class GroundDisk:
    """The disk z = 0, x^2 + y^2 <= radius^2."""

    radius: float
    texture: Texture


Shape = Sphere | Box | Cylinder | GroundDisk


@dataclass(frozen=True)
class Sky:
    """An environment at infinity seen by rays that miss every shape (see `kernels.sky_radiance`).
    Colours are linear RGB; the sun sits in the scene's light direction."""

    zenith: tuple[float, float, float] = (0.16, 0.32, 0.72)
    horizon: tuple[float, float, float] = (0.62, 0.72, 0.85)
    sun_glow: float = 0.6  # extra radiance around the sun
    cloud_cover: float = 0.45  # fraction of the sky under cloud, 0-1
    cloud_size: float = 0.6  # cloud cell size on a plane one unit above the eye
    hills: tuple[float, float, float] = (0.10, 0.16, 0.07)  # far hills' colour
    hill_height_degrees: float = 1.0  # lowest ridge above the horizon
    hill_variation_degrees: float = 5.0  # ridge height varies up to this much more with azimuth
    seed: int = 0


@dataclass(frozen=True)
class Scene:
    """Shapes (the ground first), lighting and background; see the module docstring."""

    shapes: tuple[Shape, ...]
    light_direction: tuple[float, float, float]  # unit vector pointing TOWARDS the light
    light_intensity: float = 0.9
    ambient: float = 0.3
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # sRGB in [0, 1]
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.3)  # where the demo cameras aim
    seed: int = 0
    names: tuple[str, ...] = field(default=())
    sky: Sky | None = None  # an environment at infinity instead of the background colour

    def describe(self) -> list[str]:
        """One line per shape: what it is and how it is textured."""
        return [f"{name}: {type(s).__name__.lower()} with {s.texture.kind} texture"
                for name, s in zip(self.names or [f"shape{i}" for i in range(len(self.shapes))], self.shapes)]


def _palette(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` pairs of linear-RGB albedos with well separated hues: (main, contrasting)."""
    start = rng.uniform(0.0, 1.0)
    pairs = []
    for i in range(count):
        hue = (start + i / count + rng.uniform(-0.04, 0.04)) % 1.0
        main = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 0.8), rng.uniform(0.6, 0.8))
        other = colorsys.hsv_to_rgb((hue + rng.uniform(0.08, 0.18)) % 1.0, rng.uniform(0.15, 0.4),
                                    rng.uniform(0.75, 0.9))
        # hsv values are perceptual (sRGB-like); square them for approximately linear albedos
        pairs.append((np.square(main), np.square(other)))
    return pairs


def _place(rng: np.random.Generator, footprints: list[float]) -> list[tuple[float, float]]:
    """Non-overlapping (x, y) centres for footprints (radii), all inside OBJECT_REGION_RADIUS."""
    placed: list[tuple[float, float, float]] = []
    for radius in footprints:
        for _ in range(2000):
            r = math.sqrt(rng.uniform(0.0, 1.0)) * (OBJECT_REGION_RADIUS - radius)
            angle = rng.uniform(0.0, 2 * math.pi)
            x, y = r * math.cos(angle), r * math.sin(angle)
            if all(math.hypot(x - px, y - py) > radius + pr + 0.12 for px, py, pr in placed):
                placed.append((x, y, radius))
                break
        else:  # pragma: no cover - the footprints below always fit
            raise SplatforgeError("could not place the demo objects without overlap")
    return [(x, y) for x, y, _ in placed]


def _unit(v: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=np.float64)
    return tuple(float(c) for c in v / np.linalg.norm(v))


def make_scene(seed: int = 0, background: tuple[float, float, float] = (0.0, 0.0, 0.0), sky: bool = False) -> Scene:
    """The demo scene for `seed` (same seed, same scene); see the module docstring. `sky` puts an
    outdoor sky and far hills (`Sky`, drawn from the seed) where the background colour would be."""
    if not (len(background) == 3 and all(0.0 <= float(c) <= 1.0 for c in background)):
        raise SplatforgeError(f"background must be three sRGB values in [0, 1], got {background!r}")
    rng = np.random.default_rng(seed)
    colors = _palette(rng, 5)
    tex_seed = lambda: int(rng.integers(0, 2**31))  # noqa: E731

    ground_tex = Texture("checker", (0.42, 0.36, 0.3), (0.16, 0.15, 0.14), scale=0.5, softness=0.12,
                         tint=0.25, seed=tex_seed())
    big_r, small_r = rng.uniform(0.45, 0.55), rng.uniform(0.28, 0.35)
    box_half = rng.uniform(0.3, 0.36)
    cyl_r, cyl_h = rng.uniform(0.2, 0.26), rng.uniform(0.8, 1.0)
    flat = (rng.uniform(0.28, 0.34), rng.uniform(0.18, 0.22), rng.uniform(0.14, 0.18))
    footprints = [big_r, small_r, box_half * math.sqrt(2), cyl_r, math.hypot(flat[0], flat[1])]
    spots = _place(rng, footprints)

    tilt = _unit(rng.normal(size=3) * (0.4, 0.4, 0.0) + (0.0, 0.0, 1.0))
    striped = Sphere((*spots[0], big_r), big_r,
                     Texture("stripes", tuple(colors[0][0]), tuple(colors[0][1]), scale=big_r * 0.55, axis=tilt,
                             softness=0.2, seed=tex_seed()))
    marbled = Sphere((*spots[1], small_r), small_r,
                     Texture("noise", tuple(colors[1][0]), tuple(colors[1][1]), scale=0.22, seed=tex_seed()))
    checkered = Box((*spots[2], box_half), (box_half,) * 3, rng.uniform(0, 90),
                    Texture("checker", tuple(colors[2][0]), tuple(colors[2][1]), scale=box_half / 2,
                            softness=0.12, seed=tex_seed()))
    column = Cylinder(spots[3], cyl_r, 0.0, cyl_h,
                      Texture("gradient", tuple(colors[3][0]), tuple(colors[3][1]), scale=cyl_h, seed=tex_seed()))
    stripe_axis = _unit((rng.normal(), rng.normal(), 0.0))
    slab = Box((*spots[4], flat[2]), flat, rng.uniform(0, 90),
               Texture("stripes", tuple(colors[4][0]), tuple(colors[4][1]), scale=0.2, axis=stripe_axis,
                       softness=0.25, tint=0.1, seed=tex_seed()))

    azimuth = rng.uniform(0, 2 * math.pi)
    elevation = math.radians(50.0)
    light = _unit((math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                   math.sin(elevation)))
    # drawn after everything else, from its own stream, so the shapes of a seed do not depend on `sky`
    sky_rng = np.random.default_rng([seed, 7])
    return Scene(
        shapes=(GroundDisk(GROUND_RADIUS, ground_tex), striped, marbled, checkered, column, slab),
        light_direction=light,
        background=tuple(float(c) for c in background),
        seed=seed,
        names=("ground", "striped sphere", "marbled sphere", "checkered box", "gradient column", "striped slab"),
        sky=Sky(cloud_cover=float(sky_rng.uniform(0.35, 0.55)), seed=int(sky_rng.integers(0, 2**31))) if sky else None,
    )
