"""Pick at most MAX corpus files that add the most coverage beyond the seeds.

Reads a libFuzzer merge control file (`-merge=1 -merge_control_file=FILE`), whose COV lines
list the coverage edges of each input, and runs a greedy set cover over the inputs under
`corpus/`, counting as already covered everything the inputs under `seeds/` reach. Prints the
chosen paths, one a line. Used by minimise.sh.

    python3 edge_cover.py CONTROL_FILE [MAX]
"""
import sys

control, limit = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
lines = open(control, errors="replace").read().split("\n")
count = int(lines[0])
files = lines[2 : 2 + count]
cov, size = {}, {}
for line in lines[2 + count :]:
    parts = line.split()
    if parts and parts[0] == "STARTED":
        size[int(parts[1])] = int(parts[2])
    elif parts and parts[0] == "COV":
        cov[int(parts[1])] = set(parts[2:])

covered = set()
for i, path in enumerate(files):
    if path.startswith("seeds/"):
        covered |= cov.get(i, set())
seeded = len(covered)
candidates = [i for i, p in enumerate(files) if i in cov and not p.startswith("seeds/")]
chosen = []
while len(chosen) < limit:
    # Most new edges first; the smaller file on a tie.
    best = max(candidates, key=lambda i: (len(cov[i] - covered), -size.get(i, 0)), default=None)
    if best is None or not cov[best] - covered:
        break
    covered |= cov[best]
    chosen.append(best)
    candidates.remove(best)
for i in chosen:
    print(files[i])
sys.stderr.write(
    f"{len(chosen)} files, {sum(size.get(i, 0) for i in chosen)} bytes, "
    f"{len(covered) - seeded} edges beyond the seeds\n"
)
