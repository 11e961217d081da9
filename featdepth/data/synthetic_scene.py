"""Scene description, camera path and the vectorised NumPy ray caster of the synthetic generator.

Everything here works in the *scene frame*: x right, y down, z forward (the driving direction of the
street), the road is the plane ``y = camera_height`` and the camera centre stays at ``y = 0``.
:mod:`featdepth.data.synthetic` turns scene-frame camera poses into the ``T_world_cam`` of the folder
format (world = the first camera).

Ray parametrisation: a camera-frame ray is ``d_cam = ((u - cx) / fx, (v - cy) / fy, 1)`` and a hit
point is ``o + t * R d_cam``.  Because the camera-frame z component of ``d_cam`` is 1, the ray
parameter ``t`` of a hit *is* its z-depth along the optical axis (not the ray length).

Geometry: one infinite ground plane (road, lane marks, pavement) and axis-aligned boxes (buildings
that carry the facades, cars, poles, bins).  Anything whose z-depth is beyond ``max_depth`` counts as
far background: sky colour (a smooth gradient over elevation, i.e. "at infinity"), depth =
``max_depth``, region 0.  Surfaces fade into the sky colour with distance (fog) so that the cut at
``max_depth`` is seamless.

Shading is Lambertian with one fixed directional light plus ambient, so a plane of constant albedo
has constant colour (apart from the fog far away).  Textures are procedural functions of the 3-D hit
point, so the images are multi-view consistent; their fine detail fades with the pixel footprint (a
crude mip-map) to limit aliasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# material ids of the boxes (the ground and the sky are handled separately)
MAT_FLAT = 0  # uniformly coloured wall (textureless)
MAT_WINDOWS = 1  # facade with a window grid
MAT_BLOCKS = 2  # stone-block / brick facade
MAT_OBJECT = 3  # car, pole, bin

# region labels (docs/design.md)
REGION_SKY, REGION_ROAD, REGION_FLAT_WALL, REGION_TEXTURED_WALL, REGION_OBJECT = 0, 1, 2, 3, 4

_LIGHT = np.array([0.35, -0.80, -0.48])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_AMBIENT = 0.42
_DIFFUSE = 0.62
_SKY_HORIZON = np.array([0.80, 0.84, 0.88], np.float32)
_SKY_ZENITH = np.array([0.42, 0.58, 0.82], np.float32)
_NEAR = 0.05


# ----------------------------------------------------------------------------------------------
# scene
# ----------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """Axis-aligned boxes in the scene frame plus the ground parameters.

    ``lo``/``hi`` are ``(N, 3)`` box corners, ``mat``/``label`` ``(N,)`` material and region ids,
    ``color`` ``(N, 3)`` albedo, ``params`` ``(N, 4)`` material parameters (window / block sizes,
    texture offsets), ``is_car`` ``(N,)``.
    """

    lo: np.ndarray
    hi: np.ndarray
    mat: np.ndarray
    label: np.ndarray
    color: np.ndarray
    params: np.ndarray
    is_car: np.ndarray
    ground_y: float
    road_half_width: float
    dash_period: float
    dash_phase: float
    road_tint: np.ndarray
    tile_fine: np.ndarray
    tile_coarse: np.ndarray

    @property
    def num_boxes(self) -> int:
        return int(self.lo.shape[0])


def _noise_tile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Periodic ``(n, n)`` Gaussian-filtered white noise with zero mean and unit std (float32)."""
    white = rng.standard_normal((n, n))
    f = np.fft.fftfreq(n)
    g = np.exp(-2.0 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tile = np.real(np.fft.ifft2(np.fft.fft2(white) * g))
    tile -= tile.mean()
    tile /= tile.std() + 1e-12
    return tile.astype(np.float32)


def build_scene(
    rng: np.random.Generator,
    z_start: float,
    z_end: float,
    camera_height: float,
    road_half_width: float,
    facade_range: tuple[float, float],
    textureless_fraction: float,
    object_density: float,
) -> Scene:
    """Draw a street canyon: buildings on both sides along ``[z_start, z_end]`` plus road-side objects."""
    gy = float(camera_height)
    boxes: list[tuple] = []  # (lo, hi, mat, label, color, params, is_car)

    facade_lo, facade_hi = float(facade_range[0]), float(facade_range[1])
    facades: dict[int, list[tuple[float, float, float]]] = {-1: [], 1: []}
    for side in (-1, 1):
        z = z_start
        while z < z_end:
            flat = rng.random() < textureless_fraction
            length = rng.uniform(12.0, 30.0) if flat else rng.uniform(8.0, 22.0)
            xf = rng.uniform(facade_lo, facade_hi)
            height = rng.uniform(7.0, 20.0)
            depth = 10.0
            x0, x1 = (xf, xf + depth) if side > 0 else (-xf - depth, -xf)
            lo = (x0, gy - height, z)
            hi = (x1, gy, z + length)
            if flat:
                c = rng.uniform(0.35, 0.85) * np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.08, 0.08, 3)
                boxes.append((lo, hi, MAT_FLAT, REGION_FLAT_WALL, c, (0, 0, 0, 0), False))
            elif rng.random() < 0.65:
                c = rng.uniform(0.45, 0.8) + rng.uniform(-0.1, 0.1, 3)
                params = (rng.uniform(2.4, 4.0), rng.uniform(3.0, 3.6), rng.uniform(0, 10), rng.uniform(0, 1000))
                boxes.append((lo, hi, MAT_WINDOWS, REGION_TEXTURED_WALL, c, params, False))
            else:
                c = np.array([0.62, 0.38, 0.30]) * rng.uniform(0.8, 1.2) + rng.uniform(-0.06, 0.06, 3)
                params = (rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.4), rng.uniform(0, 10), rng.uniform(0, 1000))
                boxes.append((lo, hi, MAT_BLOCKS, REGION_TEXTURED_WALL, c, params, False))
            facades[side].append((z, z + length, xf))
            z += length

    def facade_min(side: int, za: float, zb: float) -> float:
        return min(xf for (a, b, xf) in facades[side] if b > za and a < zb)

    if object_density > 0:
        for side in (-1, 1):
            z = z_start + rng.uniform(0.0, 6.0)
            while z < z_end:
                kind = rng.choice(3, p=[0.45, 0.3, 0.25])  # car, pole, bin
                if kind == 0:
                    length, width, height = rng.uniform(3.8, 4.6), rng.uniform(1.65, 1.85), rng.uniform(1.35, 1.6)
                    xa = road_half_width - width - rng.uniform(0.05, 0.25)
                    xb = xa + width
                    c = rng.uniform(0.1, 0.9, 3)
                    is_car = True
                else:
                    fmin = facade_min(side, z, z + 1.5)
                    room = fmin - road_half_width
                    if room < 0.9:
                        z += rng.uniform(2.0, 6.0)
                        continue
                    if kind == 1:
                        length = width = rng.uniform(0.12, 0.22)
                        height = rng.uniform(3.5, 6.5)
                        c = np.full(3, rng.uniform(0.25, 0.6))
                    else:
                        length, width, height = rng.uniform(0.5, 1.3), rng.uniform(0.5, 0.9), rng.uniform(0.6, 1.3)
                        c = rng.uniform(0.2, 0.8, 3)
                    xa = road_half_width + rng.uniform(0.3, max(0.31, room - width - 0.3))
                    xb = xa + width
                    is_car = False
                x0, x1 = (xa, xb) if side > 0 else (-xb, -xa)
                boxes.append(((x0, gy - height, z), (x1, gy, z + length), MAT_OBJECT, REGION_OBJECT, c,
                              (0, 0, rng.uniform(0, 10), rng.uniform(0, 1000)), is_car))
                z += length + rng.uniform(3.0, 14.0) / object_density

    lo = np.array([b[0] for b in boxes], np.float64)
    hi = np.array([b[1] for b in boxes], np.float64)
    return Scene(
        lo=lo,
        hi=hi,
        mat=np.array([b[2] for b in boxes], np.int32),
        label=np.array([b[3] for b in boxes], np.uint8),
        color=np.clip(np.array([b[4] for b in boxes], np.float32), 0.02, 0.98),
        params=np.array([b[5] for b in boxes], np.float32),
        is_car=np.array([b[6] for b in boxes], bool),
        ground_y=gy,
        road_half_width=float(road_half_width),
        dash_period=float(rng.uniform(8.0, 12.0)),
        dash_phase=float(rng.uniform(0.0, 12.0)),
        road_tint=np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.03, 0.03, 3).astype(np.float32),
        tile_fine=_noise_tile(rng, 256, 1.0),
        tile_coarse=_noise_tile(rng, 128, 3.0),
    )


# ----------------------------------------------------------------------------------------------
# camera path
# ----------------------------------------------------------------------------------------------


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def camera_path(
    rng: np.random.Generator,
    num_frames: int,
    speed_range: tuple[float, float],
    speed_jitter: float,
    yaw_amplitude_deg: float,
    pitch_amplitude_deg: float,
    sway_max_m: float = 0.6,
    sway_period_range: tuple[float, float] = (60.0, 140.0),
) -> tuple[np.ndarray, float]:
    """Scene-frame camera-to-scene transforms ``(N, 4, 4)`` of a car swaying in its lane (or weaving).

    The lateral position follows ``x(z) = xc + a sin(w z + phi)`` (heading = its tangent, so the yaw
    oscillates with the requested amplitude), with ``a`` at most ``sway_max_m`` (0.6 m: the car stays in
    its lane; up to 1.5 m it weaves across the road between the parked cars) and the period ``2 pi / w``
    drawn from ``sway_period_range`` (metres; a short period with a wide sway turns the camera by up to
    ~1 degree per frame: sequences that can show whether rotation is learned), pitch is
    ``B sin(2 pi s / P)`` of the arc length ``s`` (zero at frame 0), roll is zero, the camera height
    is constant.  The arc length travelled per frame is a per-sequence speed times a slow jitter,
    clipped into ``speed_range``.  Returns the poses and the mean speed.
    """
    lo_v, hi_v = float(speed_range[0]), float(speed_range[1])
    margin = 0.1 * (hi_v - lo_v)
    speed = rng.uniform(lo_v + margin, hi_v - margin) if hi_v > lo_v else lo_v
    jitter_period = rng.uniform(15.0, 40.0)
    jitter_phase = rng.uniform(0, 2 * np.pi)
    steps = speed * (1.0 + speed_jitter * np.sin(2 * np.pi * np.arange(num_frames - 1) / jitter_period + jitter_phase))
    eps = 0.002 * (hi_v - lo_v)
    steps = np.clip(steps, lo_v + eps, hi_v - eps) if hi_v > lo_v else np.full(num_frames - 1, lo_v)
    s = np.concatenate([[0.0], np.cumsum(steps)])

    sway_period = rng.uniform(float(sway_period_range[0]), float(sway_period_range[1]))
    w = 2 * np.pi / sway_period
    amp = min(np.tan(np.radians(yaw_amplitude_deg)) / w, float(sway_max_m))
    phi = rng.uniform(0, 2 * np.pi)
    # lane centre; a wide weave is centred so that the camera keeps >= 0.7 m from the parked cars
    # (the default's 0.6 m sway never moves it: draws and sequences are unchanged)
    xc = min(rng.uniform(0.5, 1.0), 1.6 - amp)
    pitch_amp = np.radians(pitch_amplitude_deg)
    pitch_period = rng.uniform(25.0, 60.0)

    # invert the arc length of the path numerically
    z_grid = np.linspace(0.0, s[-1] * 1.05 + 2.0, 20000)
    slope = amp * w * np.cos(w * z_grid + phi)
    ds = np.sqrt(1.0 + slope**2)
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (ds[1:] + ds[:-1]) * np.diff(z_grid))])
    z = np.interp(s, arc, z_grid)

    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    for i in range(num_frames):
        yaw = np.arctan(amp * w * np.cos(w * z[i] + phi))
        pitch = pitch_amp * np.sin(2 * np.pi * s[i] / pitch_period)
        poses[i, :3, :3] = rot_y(yaw) @ rot_x(pitch)
        poses[i, :3, 3] = (xc + amp * np.sin(w * z[i] + phi), 0.0, z[i])
    return poses, float(speed)


# ----------------------------------------------------------------------------------------------
# ray caster
# ----------------------------------------------------------------------------------------------


def _hash01(a: np.ndarray, b: np.ndarray, seed: np.ndarray | float) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) of integer lattice coordinates (vectorised)."""
    h = np.sin(a * 12.9898 + b * 78.233 + seed * 37.719) * 43758.5453
    return (h - np.floor(h)).astype(np.float32)


def _sample_tile(tile: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bilinear, wrap-around lookup of a square tile at texel coordinates ``(a, b)``."""
    n = tile.shape[0]
    a0 = np.floor(a)
    b0 = np.floor(b)
    fa = (a - a0).astype(np.float32)
    fb = (b - b0).astype(np.float32)
    ia = a0.astype(np.int64) & (n - 1)
    ib = b0.astype(np.int64) & (n - 1)
    ia1 = (ia + 1) & (n - 1)
    ib1 = (ib + 1) & (n - 1)
    flat = tile.ravel()
    t00 = flat[ia * n + ib]
    t10 = flat[ia1 * n + ib]
    t01 = flat[ia * n + ib1]
    t11 = flat[ia1 * n + ib1]
    return (t00 + (t10 - t00) * fa) * (1 - fb) + (t01 + (t11 - t01) * fa) * fb


class RayGrid:
    """Camera-frame rays of a ``(H*s, W*s)`` sub-pixel grid (``s`` samples per pixel side).

    Sub-sample ``j`` of a row sits at pixel coordinate ``(j + 0.5) / s - 0.5``; for odd ``s`` the
    middle sample of each pixel is the pixel centre.
    """

    def __init__(self, K: np.ndarray, height: int, width: int, s: int):
        self.s = int(s)
        self.h, self.w = height * self.s, width * self.s
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        u = (np.arange(self.w) + 0.5) / self.s - 0.5
        v = (np.arange(self.h) + 0.5) / self.s - 0.5
        self.x = ((u - cx) / fx).astype(np.float32)  # (w,)
        self.y = ((v - cy) / fy).astype(np.float32)  # (h,)
        # |d|^2 of every ray, flattened row-major (invariant under the camera rotation)
        self.dd_flat = (1.0 + self.x[None, :] ** 2 + self.y[:, None] ** 2).astype(np.float32).ravel()

    def index_range(self, p0: float, p1: float, n: int) -> tuple[int, int]:
        """Sub-sample indices covering the continuous pixel interval [p0, p1] (plus a margin)."""
        j0 = int(np.floor((p0 + 0.5) * self.s - 0.5)) - 1
        j1 = int(np.ceil((p1 + 0.5) * self.s - 0.5)) + 2
        return max(j0, 0), min(j1, n)


_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)])
_CORNER_SEL = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], bool)


class Renderer:
    """Renders colour, z-depth and region labels of a :class:`Scene` for a pinhole camera."""

    def __init__(self, scene: Scene, K: np.ndarray, height: int, width: int, supersample: int,
                 max_depth: float, fog_start: float):
        self.scene = scene
        self.K = np.asarray(K, np.float64)
        self.height, self.width = int(height), int(width)
        self.ss = max(1, int(supersample))
        self.max_depth = float(max_depth)
        self.fog_start = float(fog_start)
        self.color_grid = RayGrid(self.K, height, width, self.ss)
        self.center_grid = self.color_grid if self.ss % 2 == 1 else RayGrid(self.K, height, width, 1)
        self.focal = float(0.5 * (self.K[0, 0] + self.K[1, 1]))
        # corners of all boxes (N, 8, 3)
        self.corners = np.where(_CORNER_SEL[None], scene.hi[:, None, :], scene.lo[:, None, :])
        # shade of a face hit along axis a by a ray with positive (index 2a+1) / negative (2a) component
        shade = np.empty(6, np.float32)
        for a in range(3):
            for pos in (0, 1):
                n = np.zeros(3)
                n[a] = -1.0 if pos else 1.0
                shade[2 * a + pos] = _AMBIENT + _DIFFUSE * max(0.0, float(n @ _LIGHT))
        self.face_shade = shade

    # -- visibility -----------------------------------------------------------------------------

    def _box_rects(self, o: np.ndarray, R: np.ndarray) -> list[tuple[int, float, float, float, float]]:
        """Screen rectangles (continuous pixel bounds) of the boxes that can be visible."""
        pc = (self.corners - o) @ R  # (N, 8, 3) camera frame, = R^T (p - o)
        z = pc[..., 2]
        zmax = z.max(axis=1)
        zmin = z.min(axis=1)
        cand = np.flatnonzero((zmax > _NEAR) & (zmin < self.max_depth))
        if cand.size == 0:
            return []
        pc = pc[cand]
        z = pc[..., 2]
        # points: corners in front of the near plane and intersections of edges with it
        a = pc[:, _EDGES[:, 0]]
        b = pc[:, _EDGES[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        cross = (za - _NEAR) * (zb - _NEAR) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.where(cross, (_NEAR - za) / (zb - za), 0.0)
        ip = a + lam[..., None] * (b - a)
        pts = np.concatenate([pc, ip], axis=1)
        ok = np.concatenate([z >= _NEAR, cross], axis=1)
        zz = np.where(ok, pts[..., 2], 1.0)
        K = self.K
        u = K[0, 0] * pts[..., 0] / zz + K[0, 2]
        v = K[1, 1] * pts[..., 1] / zz + K[1, 2]
        big = 1e9
        umin = np.where(ok, u, big).min(1)
        umax = np.where(ok, u, -big).max(1)
        vmin = np.where(ok, v, big).min(1)
        vmax = np.where(ok, v, -big).max(1)
        keep = (umax >= -1) & (umin <= self.width) & (vmax >= -1) & (vmin <= self.height)
        return [
            (int(cand[i]), float(umin[i]), float(umax[i]), float(vmin[i]), float(vmax[i]))
            for i in np.flatnonzero(keep)
        ]

    # -- tracing ----------------------------------------------------------------------------------

    def _trace(self, grid: RayGrid, o: np.ndarray, R: np.ndarray, rects) -> tuple:
        """Closest hit per ray: z-depth ``t`` (= max_depth where none), primitive id
        (-1 sky, 0 ground, k+1 box k), hit axis (0/1/2) and the scene-frame ray components."""
        o32 = o.astype(np.float32)
        R32 = R.astype(np.float32)
        x, y = grid.x, grid.y
        dX = (R32[0, 0] * x)[None, :] + (R32[0, 1] * y + R32[0, 2])[:, None]
        dY = (R32[1, 0] * x)[None, :] + (R32[1, 1] * y + R32[1, 2])[:, None]
        dZ = (R32[2, 0] * x)[None, :] + (R32[2, 1] * y + R32[2, 2])[:, None]
        shape = dX.shape
        t = np.full(shape, self.max_depth, np.float32)
        prim = np.full(shape, -1, np.int32)
        axis = np.ones(shape, np.int8)

        # ground plane y = ground_y (the camera is above it, at y = o_y)
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = (np.float32(self.scene.ground_y) - o32[1]) / dY
        hit = (dY > 0) & (tg < t)
        np.copyto(t, tg, where=hit)
        prim[hit] = 0

        if rects:
            tiny = np.float32(1e-12)
            with np.errstate(divide="ignore"):
                inv = [np.float32(1.0) / np.where(np.abs(d) < tiny, tiny, d) for d in (dX, dY, dZ)]
            lo, hi = self.scene.lo.astype(np.float32), self.scene.hi.astype(np.float32)
            for k, umin, umax, vmin, vmax in rects:
                r0, r1 = grid.index_range(vmin, vmax, grid.h)
                c0, c1 = grid.index_range(umin, umax, grid.w)
                if r1 <= r0 or c1 <= c0:
                    continue
                sl = (slice(r0, r1), slice(c0, c1))
                tmin = []
                tnear = tfar = None
                for a in range(3):
                    ia = inv[a][sl]
                    t1 = (lo[k, a] - o32[a]) * ia
                    t2 = (hi[k, a] - o32[a]) * ia
                    mn = np.minimum(t1, t2)
                    mx = np.maximum(t1, t2)
                    tmin.append(mn)
                    tnear = mn if tnear is None else np.maximum(tnear, mn)
                    tfar = mx if tfar is None else np.minimum(tfar, mx)
                tsl = t[sl]
                h = (tnear <= tfar) & (tnear > 0) & (tnear < tsl)
                if not h.any():
                    continue
                ax = np.where(tnear == tmin[0], 0, np.where(tnear == tmin[1], 1, 2)).astype(np.int8)
                np.copyto(tsl, tnear, where=h)
                np.copyto(prim[sl], np.int32(k + 1), where=h)
                np.copyto(axis[sl], ax, where=h)
        return t, prim, axis, dX, dY, dZ

    # -- shading ----------------------------------------------------------------------------------

    def _sky(self, dY: np.ndarray, dd: np.ndarray) -> np.ndarray:
        elev = np.clip(-dY / np.sqrt(dd), 0.0, 1.0)
        w = np.sqrt(np.clip(elev * 2.2, 0.0, 1.0))[..., None]
        return _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * w

    def _shade(self, grid: RayGrid, o: np.ndarray, t, prim, axis, dX, dY, dZ) -> np.ndarray:
        sc = self.scene
        o = [float(v) for v in o]
        tf = t.ravel()
        pf = prim.ravel()
        af = axis.ravel()
        dXf, dYf, dZf = dX.ravel(), dY.ravel(), dZ.ravel()
        dd = grid.dd_flat
        col = np.empty((tf.size, 3), np.float32)
        si = np.flatnonzero(pf < 0)
        if si.size:
            col[si] = self._sky(dYf[si], dd[si])

        # ground ---------------------------------------------------------------------------
        gi = np.flatnonzero(pf == 0)
        if gi.size:
            tg = tf[gi]
            px = o[0] + tg * dXf[gi]
            pz = o[2] + tg * dZf[gi]
            fp = tg * dd[gi] / (self.focal * np.abs(dYf[gi]))  # footprint on the ground (m)
            att_f = 1.0 / (1.0 + (fp * 12.5) * (fp * 12.5))
            att_c = 1.0 / (1.0 + (fp * 1.25) * (fp * 1.25))
            nf = _sample_tile(sc.tile_fine, px / 0.04, pz / 0.04)
            nc = _sample_tile(sc.tile_coarse, px / 0.35, pz / 0.35)
            ax_ = np.abs(px)
            rh = sc.road_half_width
            road = ax_ < rh
            val = np.where(road, np.float32(0.34), np.float32(0.56))
            val = val + (0.05 * att_f) * nf + (0.035 * att_c) * nc
            # pavement slabs and the kerb
            joint_att = 1.0 / (1.0 + (fp * 25.0) * (fp * 25.0))
            jz = np.abs(((pz / 1.5) % 1.0) - 0.5) > 0.485
            jx = np.abs((((ax_ - rh) / 1.5) % 1.0) - 0.5) > 0.485
            val = val - np.where(~road & (jz | jx), 0.12 * joint_att, 0.0)
            kerb = (ax_ >= rh) & (ax_ < rh + 0.18)
            val = np.where(kerb, 0.72 + 0.03 * nf * att_f, val)
            # lane marks: dashed centre line, continuous edge lines
            dash = ((pz + sc.dash_phase) / sc.dash_period) % 1.0 < 0.4
            centre = (ax_ < 0.07) & dash
            edge = np.abs(ax_ - (rh - 0.25)) < 0.08
            val = np.where(centre | edge, 0.88 + 0.02 * nf * att_f, val)
            shade = _AMBIENT + _DIFFUSE * max(0.0, -float(_LIGHT[1]))
            col[gi] = (val * shade)[:, None] * sc.road_tint

        # boxes ----------------------------------------------------------------------------
        bi = np.flatnonzero(pf > 0)
        if bi.size:
            k = pf[bi] - 1
            tb = tf[bi]
            a = af[bi].astype(np.int64)
            dXb, dYb, dZb = dXf[bi], dYf[bi], dZf[bi]
            dcomp = np.where(a == 0, dXb, np.where(a == 1, dYb, dZb))
            shade = self.face_shade[2 * a + (dcomp > 0)]
            albedo = sc.color.take(k, axis=0)
            mat = sc.mat[k]
            tex = mat != MAT_FLAT
            if tex.any():
                ti = np.flatnonzero(tex)
                kt = k[ti]
                tt = tb[ti]
                px = o[0] + tt * dXb[ti]
                py = o[1] + tt * dYb[ti]
                pz = o[2] + tt * dZb[ti]
                at = a[ti]
                u = np.where(at == 0, pz, px)  # horizontal coordinate along the face
                hgt = np.where(at == 1, pz, sc.ground_y - py)  # height above ground
                fp = tt * dd[bi][ti] / (self.focal * np.maximum(np.abs(dcomp[ti]), 1e-6))
                prm = sc.params.take(kt, axis=0)
                u = u + prm[:, 2]
                nf = _sample_tile(sc.tile_fine, u / 0.05 + prm[:, 3], hgt / 0.05)
                base = albedo.take(ti, axis=0)
                m = sc.mat[kt]
                out = base * (1.0 + 0.07 * nf / (1.0 + (fp * 10.0) * (fp * 10.0)))[:, None]

                wi = np.flatnonzero(m == MAT_WINDOWS)
                if wi.size:
                    su, sh = prm[wi, 0], prm[wi, 1]
                    cu, ch = u[wi] / su, (hgt[wi] - 0.6) / sh
                    iu, ih = np.floor(cu), np.floor(ch)
                    fu, fh = cu - iu, ch - ih
                    win = (fu > 0.22) & (fu < 0.78) & (fh > 0.25) & (fh < 0.8) & (hgt[wi] > 2.5)
                    glass = 0.12 + 0.25 * _hash01(iu, ih, prm[wi, 3])
                    gcol = np.stack([glass * 0.9, glass * 0.95, glass * 1.1], axis=1)
                    wc = np.where(win[:, None], gcol, out[wi])
                    # fade the grid into its mean colour when a window shrinks below a few pixels
                    fade = np.clip((fp[wi] / np.minimum(su, sh) - 0.12) / 0.2, 0.0, 1.0)[:, None]
                    mean = out[wi] * 0.8 + 0.2 * np.array([0.27, 0.28, 0.32], np.float32)
                    out[wi] = wc + (mean - wc) * fade

                bk = np.flatnonzero(m == MAT_BLOCKS)
                if bk.size:
                    bw, bh = prm[bk, 0], prm[bk, 1]
                    ch = hgt[bk] / bh
                    ih = np.floor(ch)
                    cu = u[bk] / bw + 0.5 * (ih % 2)
                    iu = np.floor(cu)
                    fu, fh = cu - iu, ch - ih
                    br = 0.82 + 0.36 * _hash01(iu, ih, prm[bk, 3])
                    mortar = (np.minimum(fu, 1 - fu) * bw < 0.02) | (np.minimum(fh, 1 - fh) * bh < 0.02)
                    bc = out[bk] * br[:, None]
                    bc = np.where(mortar[:, None], np.float32(0.78), bc)
                    fade = np.clip((fp[bk] / bh - 0.15) / 0.25, 0.0, 1.0)[:, None]
                    mean = out[bk] * 0.88 + 0.12 * 0.78
                    out[bk] = bc + (mean - bc) * fade

                ci = np.flatnonzero(sc.is_car[kt])
                if ci.size:
                    top = sc.ground_y - sc.lo[kt[ci], 1]
                    band = (hgt[ci] > top - 0.5) & (hgt[ci] < top - 0.08) & (at[ci] != 1)
                    out[ci] = np.where(band[:, None], np.array([0.15, 0.17, 0.2], np.float32), out[ci])
                    wheel = hgt[ci] < 0.35
                    out[ci] = np.where(wheel[:, None], np.float32(0.08), out[ci])
                albedo[ti] = out
            col[bi] = albedo * shade[:, None]

        # fog towards the sky colour of the same direction ------------------------------------
        if self.max_depth > self.fog_start:
            fi = np.flatnonzero((tf > self.fog_start) & (pf >= 0))
            if fi.size:
                f = (tf[fi] - self.fog_start) * (1.0 / (self.max_depth - self.fog_start))
                f = np.minimum(f, 1.0)
                cf = col[fi]
                col[fi] = cf + (self._sky(dYf[fi], dd[fi]) - cf) * (f * f)[:, None]
        return col.reshape(t.shape + (3,))

    # -- public -----------------------------------------------------------------------------------

    def render(self, o: np.ndarray, R: np.ndarray, geometry: bool = True) -> dict:
        """Render the view of a camera at scene-frame centre ``o`` with camera-to-scene rotation ``R``.

        Returns ``image`` ``(H, W, 3)`` float32 in [0, 1] (the average of the ``s x s`` sub-pixel
        rays) and, when ``geometry``, ``depth`` ``(H, W)`` float32 z-depth and ``regions`` ``(H, W)``
        uint8 of the pixel-centre ray.
        """
        o = np.asarray(o, np.float64)
        R = np.asarray(R, np.float64)
        rects = self._box_rects(o, R)
        g = self.color_grid
        t, prim, axis, dX, dY, dZ = self._trace(g, o, R, rects)
        col = self._shade(g, o, t, prim, axis, dX, dY, dZ)
        s = self.ss
        image = col.reshape(self.height, s, self.width, s, 3).mean(axis=(1, 3), dtype=np.float32)
        out = {"image": np.clip(image, 0.0, 1.0)}
        if geometry:
            if s % 2 == 1:
                c = s // 2
                tc, pc = t[c::s, c::s], prim[c::s, c::s]
            else:
                tc, pc, *_ = self._trace(self.center_grid, o, R, rects)
            labels = np.zeros(tc.shape, np.uint8)
            labels[pc == 0] = REGION_ROAD
            bm = pc > 0
            labels[bm] = self.scene.label[pc[bm] - 1]
            depth = np.where(pc >= 0, tc, np.float32(self.max_depth)).astype(np.float32)
            out["depth"] = np.ascontiguousarray(depth)
            out["regions"] = np.ascontiguousarray(labels)
        return out
