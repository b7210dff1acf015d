// A Java server with a Thread per connection over a ServerSocket, for test_jvm.sh. Run from
// source (java DigestServer.java PORT: the JRE compiles it in memory at start, no JDK needed).
//
// Listens on 127.0.0.1:PORT and prints "listening on PORT". Each connection gets a Thread that
// reads requests, a line with a length N and then N bytes, and answers each with a line holding
// the SHA-256 of those bytes in hex and then the bytes themselves (lines end with CRLF), until
// the client closes the connection (digest_client.py is the client). On SIGTERM its shutdown hook prints "stopped:
// connections=N requests=N" (a request is counted before its answer is written, so a client that
// has read every answer has been counted) and the JVM exits with status 143, as Java does.
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.concurrent.atomic.AtomicInteger;

public class DigestServer {
    static final AtomicInteger connections = new AtomicInteger();
    static final AtomicInteger requests = new AtomicInteger();

    public static void main(String[] args) throws IOException {
        ServerSocket server = new ServerSocket(Integer.parseInt(args[0]), 128,
                InetAddress.getByAddress(new byte[] {127, 0, 0, 1}));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println(
                "stopped: connections=" + connections.get() + " requests=" + requests.get())));
        System.out.println("listening on " + server.getLocalPort());
        while (true) {
            Socket sock = server.accept();
            connections.incrementAndGet();
            new Thread(() -> serve(sock)).start();
        }
    }

    static void serve(Socket sock) {
        try (sock;
             InputStream in = new BufferedInputStream(sock.getInputStream());
             BufferedOutputStream out = new BufferedOutputStream(sock.getOutputStream())) {
            String line;
            while ((line = readLine(in)) != null) {
                int size = Integer.parseInt(line.strip());
                byte[] body = in.readNBytes(size);
                if (body.length != size)
                    break;
                String digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(body));
                requests.incrementAndGet();
                out.write((digest + "\r\n").getBytes(StandardCharsets.US_ASCII));
                out.write(body);
                out.flush();
            }
        } catch (IOException | NoSuchAlgorithmException e) {
            System.err.println("connection: " + e);
        }
    }

    // A line up to its "\n", without it, or null at the end of the stream.
    static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        int c;
        while ((c = in.read()) != -1 && c != '\n')
            line.write(c);
        return c == -1 && line.size() == 0 ? null : line.toString(StandardCharsets.US_ASCII);
    }
}
