#!/usr/bin/env python3
import re, subprocess, sys, os
root = sys.argv[1]
out = subprocess.run(["cargo", "test", "-q", "--test", "links"], cwd=root, capture_output=True, text=True).stdout
n = 0
for m in re.finditer(r"^([^\s:]+\.md):(\d+): \[(`[^`]+`)\]\(([^)#]+)#(L\d+(?:-L\d+)?)\): (.*)$", out, re.M):
    path, line, item, target, old, msg = m.groups()
    md = os.path.join(root, path)
    code = os.path.normpath(os.path.join(os.path.dirname(md), target))
    src = open(code).read().split("\n")
    new = None
    at = re.search(r"it is at #(L\d+(?:-L\d+)?)", msg)
    one = re.search(r"; line (\d+) does$", msg)
    if at:
        new = at.group(1)
    elif one:
        new = f"L{one.group(1)}"
    else:
        name = item.strip("`").split("::")[-1].replace("fn ", "")
        for i, l in enumerate(src):
            if re.match(rf"\s*(pub(\([a-z]+\))? )?(const )?fn {re.escape(name)}\b", l):
                indent = len(l) - len(l.lstrip())
                end = next(j for j in range(i, len(src)) if src[j] == " " * indent + "}")
                new = f"L{i+1}-L{end+1}"
                break
    if not new:
        print("manual:", path, line, item, msg[:100]); continue
    lines = open(md).read().split("\n")
    k = int(line) - 1
    lines[k] = lines[k].replace(f"[{item}]({target}#{old})", f"[{item}]({target}#{new})", 1)
    open(md, "w").write("\n".join(lines)); n += 1
print(n, "moved")
