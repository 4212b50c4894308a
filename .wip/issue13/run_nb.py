import sys, os, time, nbformat, nbclient
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
t = time.time()
nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}).execute()
nbformat.write(nb, out)
print(f"ran {path} in {time.time()-t:.0f} s -> {out}")
