// A small SFTP client on JSch, for Ferry's client-matrix test: connects with
// a password or a private key, checks the server's host key against a
// known_hosts file, uploads one file and downloads it under another name.
//
// java -cp jsch.jar:DIR JschClient HOST PORT USER (password PW | key FILE)
//     KNOWN_HOSTS LOCAL REMOTE BACK
// Prints the host key algorithm it verified and "DONE"; exits 1 on failure.

import com.jcraft.jsch.ChannelSftp;
import com.jcraft.jsch.JSch;
import com.jcraft.jsch.Session;

public final class JschClient {
    private JschClient() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 9) {
            System.err.println("usage: HOST PORT USER (password PW | key FILE) KNOWN_HOSTS LOCAL REMOTE BACK");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        String user = args[2];
        String how = args[3];
        String secret = args[4];
        JSch jsch = new JSch();
        jsch.setKnownHosts(args[5]);
        if (how.equals("key")) {
            jsch.addIdentity(secret);
        }
        Session session = jsch.getSession(user, host, port);
        if (how.equals("password")) {
            session.setPassword(secret);
            session.setConfig("PreferredAuthentications", "password");
        } else {
            session.setConfig("PreferredAuthentications", "publickey");
        }
        session.setConfig("StrictHostKeyChecking", "yes");
        session.connect(30000);
        System.out.println("HOSTKEY " + session.getHostKey().getType());
        ChannelSftp sftp = (ChannelSftp) session.openChannel("sftp");
        sftp.connect(30000);
        sftp.put(args[6], args[7]);
        sftp.get(args[7], args[8]);
        sftp.disconnect();
        session.disconnect();
        System.out.println("DONE");
    }
}
