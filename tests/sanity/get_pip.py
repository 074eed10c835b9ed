"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test fills each sanity test's virtual environment by running a cached
``get-pip.py`` from a host this machine cannot reach (only package registries
are reachable). This does the same job from what is here: the interpreter's own
``ensurepip`` puts a bundled pip into the empty environment, and that pip then
installs the exact pip release ansible-test asked for (``pip==X``) from the
package index, like get-pip.py does.

tests/sanity/run.sh copies this file to the cache path ansible-test reads
(``~/.ansible/test/cache/get_pip_<version>.py``) only when no script is cached.
"""
import subprocess
import sys


def main():
    # get-pip.py's own switches; plain pip does not know them (it installs neither by default).
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + args)


if __name__ == '__main__':
    main()
