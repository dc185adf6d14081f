"""File-transfer servers (FTP/FTPS and SFTP) whose users' files live in Box.

Each server login acts as its own Box user through the app's As-User access, as CrushFTP's Box
VFS does. The protocol modules are imported on demand so that ``boxfs.servers.users`` (hashing,
users file) works without pyftpdlib or asyncssh installed.

- :mod:`boxfs.servers.users`: users file (TOML) and scrypt password hashes.
- :mod:`boxfs.servers.throttle`: failed-login delays and lockouts per address and per login.
- :mod:`boxfs.servers.safety`: checks of the users file, secrets, host-key folder and FTP setup.
- :mod:`boxfs.servers.common`: Box filesystem factory, session limits, transfer file objects.
- :mod:`boxfs.servers.ftp`: ``run_ftp``, ``start_ftp_server``, ``make_ftp_server``.
- :mod:`boxfs.servers.sftp`: ``run_sftp``, ``start_sftp_server``.
"""
